"""report.html without a browser: the outlier rules, the page's content (self-contained, escaped,
thumbnails linking to overlays that exist), the predict and track folders, the command.
The page in a real browser: test_report_browser.py."""
import base64
import csv
import html.parser
import re
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from leafseg.inference import report
from leafseg.measure.metrics import write_csv
from tests.leafseg.inference.report_data import FRAMES, make_predict_output


def whats(flags):
    return [(flag.get("plant"), flag.get("image"), flag["what"]) for flag in flags]


# ------------------------------------------------------------------------------ outlier rules

def test_a_smooth_series_is_not_flagged():
    assert report.series_outliers({"a": list(enumerate([1, 2, 2, 3, 4, 5, 5, 6, 8, 9, 10]))}) == []


def test_a_spike_is_one_count_that_jumps_and_its_way_back_is_not_a_fall():
    flags = report.series_outliers({"a": [("d1", 4), ("d2", 5), ("d3", 11), ("d4", 6), ("d5", 7)]})
    assert whats(flags) == [("a", "d3", "count jumps")]
    assert flags[0]["frame"] == "d3" and "11 leaves" in flags[0]["detail"]


def test_a_jump_of_three_is_flagged_two_is_not():
    assert whats(report.series_outliers({"a": list(enumerate([5, 8, 5]))})) == [("a", 1, "count jumps")]
    assert whats(report.series_outliers({"a": list(enumerate([5, 7, 5]))})) == [("a", 2, "count falls")]
    assert report.series_outliers({"a": list(enumerate([5, 7, 6]))}) == []


def test_a_rise_of_three_and_a_fall_of_two():
    assert whats(report.series_outliers({"a": list(enumerate([3, 3, 3, 7, 7, 7]))})) == [("a", 3, "count rises")]
    assert whats(report.series_outliers({"a": list(enumerate([6, 6, 4, 4, 5]))})) == [("a", 2, "count falls")]
    assert report.series_outliers({"a": list(enumerate([6, 6, 5, 5, 6]))}) == []   # a leaf hidden: a fall of one


def test_a_plant_found_in_one_frame_and_not_the_next():
    flags = report.series_outliers({"p": [("d1", 2), ("d2", 3), ("d3", 0), ("d4", None), ("d5", 3)]})
    assert whats(flags) == [("p", "d3", "plant lost")]
    assert flags[0]["detail"] == "3 leaves in d2, none in d3"
    flags = report.series_outliers({"p": [("d1", 2), ("d2", None)]})
    assert whats(flags) == [("p", "d2", "plant lost")] and "not found in d2" in flags[0]["detail"]
    assert report.series_outliers({"p": [("d1", 0), ("d2", 0), ("d3", 1)]}) == []   # not yet found is not lost


def test_a_single_image_far_from_the_batch():
    counts = {"a": 8, "b": 9, "c": 7, "d": 8, "e": 30, "f": 8}
    assert whats(report.batch_outliers(counts)) == [(None, "e", "count far from the batch")]
    assert report.batch_outliers({"a": 8, "b": 9, "c": 7, "d": 8, "e": 11}) == []   # 3 off, but within 3 MADs
    assert report.batch_outliers({"a": 8, "b": 30}) == []                            # too few to say


def test_a_near_empty_image():
    images = [{"name": "none", "leaves": 0, "area_fraction": 0.0}, {"name": "tiny", "leaves": 1, "area_fraction": 0.004},
              {"name": "fine", "leaves": 2, "area_fraction": 0.006}, {"name": "unknown", "leaves": 3}]
    assert whats(report.empty_outliers(images)) == [(None, "none", "near-empty image"), (None, "tiny", "near-empty image")]


def test_flag_outliers_takes_the_series_rules_when_there_are_series_else_the_batch_rule():
    images = [{"name": n, "leaves": c} for n, c in [("a", 8), ("b", 9), ("c", 7), ("d", 8), ("e", 30)]]
    assert [f["what"] for f in report.flag_outliers(images)] == ["count far from the batch"]
    assert report.flag_outliers(images, {"x": list(enumerate([8, 9, 10]))}) == []


# ------------------------------------------------------------------------------ the page

class Page(html.parser.HTMLParser):
    """The tags, attributes and text of a page."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.text = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag):
        return [attrs for name, attrs in self.tags if name == tag]


@pytest.fixture
def predicted(tmp_path):
    out = tmp_path / "predictions"
    make_predict_output(out)
    return out


def test_the_report_of_a_predict_folder(predicted):
    path = report.report_from_predict_output(predicted)
    assert path == predicted / "report.html"
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    # Self-contained: no address outside the file but the overlays beside it.
    assert not re.search(r"(https?:)?//", re.sub(r"data:[^\"']+", "", text)), "an external address"
    assert [a for a in page.all("link") + page.all("script") if a.get("src") or a.get("href")] == []
    # A thumbnail per image, embedded, linking to its overlay (which exists).
    images = page.all("img")
    assert all(a["src"].startswith("data:image/") for a in images)
    thumbs = [a for a in images if a["src"].startswith("data:image/jpeg")]
    assert len(thumbs) == len(FRAMES)
    first = Image.open(__import__("io").BytesIO(base64.b64decode(thumbs[0]["src"].split(",", 1)[1])))
    assert max(first.size) == report.THUMBNAIL_SIZE
    links = [a["href"] for a in page.all("a")]
    assert links == [f"overlays/{name}_overlay.png" for name, _ in FRAMES]
    assert all((predicted / urllib.parse.unquote(link)).is_file() for link in links)
    # Growth curves (the names carry dates): leaf count and rosette area, embedded PNGs.
    assert sum(a["src"].startswith("data:image/png") for a in images) == 2
    # The table: every row of plants.csv, sortable headers with aria-sort.
    table = text[text.index('id="plant-table"'):]
    assert table.count("<tr") == len(FRAMES) + 1
    assert [a.get("aria-sort") for name, a in page.tags if name == "th"][-6:] == ["none"] * 6
    # Flags: the spike, the lost plant, the empty image; settings and counts.
    body = " ".join(page.text)
    for what in ("count jumps", "plant lost", "near-empty image"):
        assert what in body
    assert "Flagged (3)" in body
    assert "sha256:0123abcd" in body and "float32" in body
    assert "tray_2026_01_03" in text[text.index('id="outlier-table"'):text.index("</table>", text.index('id="outlier-table"'))]
    assert text.count('<tr class="flagged">') == 2   # tray day 3 and pot day 5 (lost, and empty)


def test_the_report_has_its_batch_rule_without_dates(tmp_path):
    frames = [(f"plant{k}", count) for k, count in enumerate([8, 9, 7, 8, 30, 8])]
    make_predict_output(tmp_path, frames)
    text = report.report_from_predict_output(tmp_path).read_text(encoding="utf-8")
    assert "count far from the batch" in text and "plant4" in text
    assert "data:image/png" not in text   # no dates, no growth curves


@pytest.mark.parametrize("mm_per_pixel", [None, 0.25])
def test_a_near_empty_image_of_a_predict_folder_by_its_leaf_area(mm_per_pixel, tmp_path):
    """Leaves of radius 4 (50 px each) in 320 x 240 images: 3 cover 0.2 % (near-empty), 10 cover 0.65 %."""
    frames = [("few", 3), ("many", 10), ("more", 10), ("most", 11), ("all", 10)]
    make_predict_output(tmp_path, frames, radius=4, mm_per_pixel=mm_per_pixel)
    text = report.report_from_predict_output(tmp_path).read_text(encoding="utf-8")
    flagged = text[text.index('id="outlier-table"'):text.index("</table>", text.index('id="outlier-table"'))]
    assert flagged.count("near-empty image") == 1 and ">few<" in flagged and "% of the image" in flagged
    assert ("mm_per_pixel" in text) == (mm_per_pixel is not None)


def test_text_is_escaped_and_links_are_quoted(tmp_path):
    overlay = tmp_path / "over lays" / "a&b.png"
    overlay.parent.mkdir()
    Image.new("RGB", (400, 200), (10, 200, 10)).save(overlay)
    evil = '<script>alert("x")</script>'
    path = report.write_report(tmp_path, title=f"run {evil}", images=[{"name": evil, "overlay": overlay, "leaves": 1}],
                               table_rows=[{"image": evil, "n": 1}], outliers=[{"image": evil, "what": "w", "detail": evil}],
                               settings={"weights": evil})
    text = path.read_text(encoding="utf-8")
    assert evil not in text and text.count("<script>") == 1
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    page = Page(text)
    assert page.all("a")[0]["href"] == "over%20lays/a%26b.png"
    assert page.all("img")[0]["width"] == "160" and page.all("img")[0]["height"] == "80"


def test_a_missing_overlay_is_no_broken_image_and_many_images_keep_the_flagged(tmp_path):
    images = [{"name": f"i{k}", "overlay": f"overlays/i{k}_overlay.png", "leaves": 1} for k in range(10)]
    text = report.build_report(tmp_path, title="t", images=images, outliers=[{"image": "i9", "what": "w"}], max_images=3)
    assert "<img" not in text and text.count("no overlay") == 3
    assert ">i0<" in text and ">i1<" in text and ">i9<" in text and ">i2<" not in text
    assert "7 images are not shown" in text


def test_numbers_are_right_aligned_and_floats_short(tmp_path):
    text = report.build_report(tmp_path, title="t", table_rows=[{"a": 1.23456789, "b": "x", "c": float("nan")}])
    assert '<td class="num">1.23457</td><td>x</td><td></td>' in text


def test_written_atomically_over_an_old_report(predicted):
    (predicted / "report.html").write_text("old")
    report.report_from_predict_output(predicted)
    assert (predicted / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in predicted.iterdir() if p.name.startswith(".report")] == []


def test_not_a_predict_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="plants.csv"):
        report.report_from_predict_output(tmp_path)


def test_the_report_of_a_track_folder(tmp_path):
    rows = [{"plant": p, "frame": f"{p}_2026_01_0{d}", "date": f"2026-01-0{d}", "leaf_count": c,
             "rosette_area_px": c and 100 * c, "rgr": 0.1} for p, counts in (("a", [2, 3, 4]), ("b", [2, 3, None]))
            for d, c in enumerate(counts, 1)]
    write_csv(rows, tmp_path / "growth.csv")
    write_csv([{"plant": "a", "frame": "x", "leaf_id": k} for k in (1, 2, 3)], tmp_path / "tracks.csv")
    Image.new("RGB", (300, 200), "white").save(tmp_path / "growth_area.png")
    (tmp_path / "a" / "overlays").mkdir(parents=True)
    Image.new("RGB", (300, 200), "green").save(tmp_path / "a" / "overlays" / "a_2026_01_01_overlay.png")
    text = report.report_from_track_output(tmp_path).read_text(encoding="utf-8")
    assert "plant lost" in text and "b_2026_01_03" in text
    assert 'href="a/overlays/a_2026_01_01_overlay.png"' in text
    assert text.count("data:image/png") == 1 and text.count("data:image/jpeg") == 1
    assert "leaves tracked" in text


# ------------------------------------------------------------------------------ the command

def test_leafseg_report_command(predicted, tmp_path, capsys):
    from leafseg.cli import COMMANDS, main

    assert COMMANDS["report"][0] == "leafseg.cli.report"
    assert main(["report", str(predicted)]) == 0
    assert (predicted / "report.html").is_file()
    assert str(predicted / "report.html") in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "report: error:" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2   # a folder, but no run's
    assert "plants.csv not found" in capsys.readouterr().err
    track = tmp_path / "track"
    write_csv([{"plant": "a", "frame": f"d{d}", "leaf_count": c} for d, c in enumerate([3, 4, 0])], track / "growth.csv")
    assert main(["report", str(track), "--title", "My <lapse>"]) == 0
    text = (track / "report.html").read_text(encoding="utf-8")
    assert "Growth (growth.csv)" in text and "plant lost" in text and "<title>My &lt;lapse&gt;</title>" in text


# ------------------------------------------------------------------------------ predict writes it

@pytest.mark.parametrize("no_report", [False, True])
def test_predict_writes_the_report_at_its_end_unless_no_report(no_report, tmp_path, monkeypatch):
    """``leafseg predict`` with a stand-in model (painted leaves are its detections) on dated
    photographs of one plant whose count jumps on one day."""
    from leafseg.cli import predict as predict_command
    from tests.leafseg.inference.test_plants import Oracle, Painting

    photos = tmp_path / "photos"
    photos.mkdir()
    for day, leaves in enumerate([3, 4, 9, 5, 6], 1):
        painting = Painting(64, 64)
        painting.rosette("1", 32, 32, leaves=leaves, spread=16, radius=5)
        Image.fromarray(painting.image).save(photos / f"plant7_2026_03_0{day}.png")
    monkeypatch.setattr(predict_command, "load_inference_model",
                        lambda *args, **kwargs: (Oracle(64), "stand-in", str(tmp_path / "none.h5")))
    out = tmp_path / "out"
    argv = [str(photos), "--out", str(out), "--quiet", "--plants", "one"] + (["--no-report"] if no_report else [])
    assert predict_command.main(argv) == 0
    assert (out / "plants.csv").is_file()
    if no_report:
        assert not (out / "report.html").exists()
        return
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "count jumps" in text and "plant7_2026_03_03" in text
    assert text.count("data:image/jpeg") == 5 and text.count("data:image/png") == 2
