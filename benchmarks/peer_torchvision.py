"""Peer figures: torchvision's Mask R-CNN on this machine, with the leaf configuration's sizes.

``benchmarks/bench_model.py`` (``leafseg bench``) feeds leafseg the same input, so the two figures
compare as a ratio: ResNet-FPN (``resnet101`` by default), anchors 8..128 on P2..P6 with ratios
0.5, 1, 2, 6000 proposals before NMS and 2000 / 1000 after it (training / inference), 256 RPN
and 200 ROI training samples, a random image and 12 ground-truth rectangles of 40 x 60 pixels,
SGD (learning rate 0.001, momentum 0.9), batch 1, two threads. It prints one line: the mean
training-step time over 5 steps after 2 untimed ones, and the mean inference time.

torch is large and never a leafseg dependency: run this in a virtual environment of its own,
outside leafseg's ``.venv`` (from the repository root)::

    python3 -m venv ~/tv-venv
    ~/tv-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    ~/tv-venv/bin/python benchmarks/peer_torchvision.py resnet101 512 > peer.txt
    .venv/bin/python benchmarks/bench_model.py --peer-json peer.txt

The machine's speed drifts, so run the two right after one another (or the peer before and
after leafseg and compare with the mean). Arguments: backbone (resnet50 | resnet101), image
side in pixels. Keep what this measures unchanged, or earlier figures stop being comparable.
"""
import time, sys, torch, torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.anchor_utils import AnchorGenerator
torch.set_num_threads(2); torch.manual_seed(0)
depth = sys.argv[1] if len(sys.argv) > 1 else "resnet101"
size = int(sys.argv[2]) if len(sys.argv) > 2 else 512
bb = resnet_fpn_backbone(backbone_name=depth, weights=None, trainable_layers=5)
ag = AnchorGenerator(sizes=((8,),(16,),(32,),(64,),(128,)), aspect_ratios=((0.5,1.0,2.0),)*5)
m = MaskRCNN(bb, num_classes=2, rpn_anchor_generator=ag, min_size=size, max_size=size,
             rpn_pre_nms_top_n_train=6000, rpn_post_nms_top_n_train=2000,
             rpn_pre_nms_top_n_test=6000, rpn_post_nms_top_n_test=1000,
             rpn_batch_size_per_image=256, box_batch_size_per_image=200, box_detections_per_img=100)
img = torch.rand(3, size, size)
def target():
    masks = torch.zeros(12, size, size, dtype=torch.uint8); boxes=[]
    for i in range(12):
        x, y = 40 + 30*i, 60 + 25*i
        masks[i, y:y+60, x:x+40] = 1; boxes.append([x, y, x+40, y+60])
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.ones(12, dtype=torch.int64), "masks": masks}
t = target()
opt = torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9)
m.train()
for i in range(2):
    loss = sum(m([img], [t]).values()); opt.zero_grad(); loss.backward(); opt.step()
n=5; t0=time.time()
for i in range(n):
    loss = sum(m([img], [t]).values()); opt.zero_grad(); loss.backward(); opt.step()
tr = (time.time()-t0)/n
m.eval()
with torch.no_grad():
    m([img]); t0=time.time()
    for i in range(n): m([img])
inf = (time.time()-t0)/n
print(f"torchvision {torchvision.__version__} {depth}-FPN {size}px train_step_s={tr:.3f} infer_s={inf:.3f}")
