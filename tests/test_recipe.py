"""leafseg recipe: the commands it runs (the recipes themselves train models: benchmarks' work)."""
import pytest

from leafseg import recipe, train


def test_a_fresh_recipe_trains_leaf_small_from_random_weights_with_the_domain_augmentation():
    argv = recipe.train_argv("data", "logs", epochs=36, seed=3, resume=False)
    args = train.build_parser().parse_args(argv)
    assert (args.config, args.weights, args.stage, args.epochs, args.augment) == ("leaf_small", "none", "all", 36,
                                                                                  "domain")
    assert (args.schedule, args.warmup_steps, args.seed, args.dataset, args.logs) == ("cosine", 200, 3, "data", "logs")
    train.check_options(args)


def test_a_short_recipe_warms_up_over_a_tenth_and_a_rerun_resumes():
    args = train.build_parser().parse_args(recipe.train_argv("d", "l", epochs=2, seed=0, resume=False,
                                                             steps_per_epoch=5))
    assert (args.warmup_steps, args.steps_per_epoch) == (1, 5)
    args = train.build_parser().parse_args(recipe.train_argv("d", "l", epochs=36, seed=0, resume=True))
    assert args.resume and args.weights is None and args.epochs == 36


def test_command_line(capsys):
    assert recipe.main(["leaf-small", "--family", "dark"]) == 2
    assert "--family is for leave-one-style-out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe.main(["leaf-large"])
    assert "invalid choice: 'leaf-large'" in capsys.readouterr().err
