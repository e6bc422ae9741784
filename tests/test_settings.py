"""One settings object: TrackingSettings is checked in one place, the weights carry theirs, and the
Python API, the CLI, the evaluation, the demo and the scripts all resolve the same one.

The API-vs-CLI test runs the shipped weights at their validated settings (window 8, 4 iterations,
short side 192, second pass x2) on a 6-frame 96x128 clip: model at 192x256, second pass 384x512.
"""

import dataclasses
import importlib.util
import json
import logging
import os
import re
import shutil

import cv2
import numpy as np
import pytest

import objtrack_jax
from objtrack_jax import evaluation, model_io, settings as settings_lib, tracking
from objtrack_jax.settings import TrackingSettings, from_info, resolve

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def shipped():
    return model_io.load_pretrained()


@pytest.fixture()
def cached_model(shipped, monkeypatch):
    """Entry points get the shipped weights without re-reading them."""
    monkeypatch.setattr(model_io, "load_model", lambda checkpoint=None: shipped)
    return shipped


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 6-frame 96x128 real-photo clip as an array and as a folder of PNG frames (lossless)."""
    from objtrack_jax.data_pipelines import real_scenes

    seq = real_scenes.generate_sequence(3, frames=6, size=(96, 128), num_points=64, photos="eval")
    video = seq["rgbs"]
    folder = tmp_path_factory.mktemp("clip")
    for i, frame in enumerate(video):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return video, str(folder)


# ------------------------------------------------------------------------------------------------
# The object
# ------------------------------------------------------------------------------------------------


def test_shipped_weights_record_their_settings(shipped):
    s = from_info(shipped[2])
    assert s == TrackingSettings(window=8, iters=4, short_side=192, refine_scale=2.0,
                                 refine_iters=4, anchor=True)
    assert s.model_size(96, 128) == (192, 256) and s.fine_size((192, 256)) == (384, 512)
    assert TrackingSettings().model_size(540, 960) == (384, 680)  # weights that record nothing


@pytest.mark.parametrize("kw, needle", [
    ({"window": 1}, "window must be >= 2"), ({"iters": 0}, "iters must be >= 1"),
    ({"window": 2.5}, "window must be an integer"), ({"chunk_size": 0}, "chunk_size must be >= 1"),
    ({"refine_scale": 0.5}, "refine_scale must be 0 .one pass. or between 1 and 8"),
    ({"refine_scale": 9}, "between 1 and 8"), ({"refine_scale": "x"}, "must be a number"),
    ({"resolution": (130, 128)}, "multiples of 8"), ({"short_side": 64}, "short_side must be >= 128"),
    ({"carry": "both"}, "carry must be one of"), ({"max_memory_mb": 0}, "max_memory_mb must be >= 1")])
def test_bad_values_name_the_setting(kw, needle):
    with pytest.raises(ValueError, match=needle):
        TrackingSettings(**kw)


def test_one_rule_for_the_second_pass():
    for off in (None, 0, 1, 1.0):
        assert TrackingSettings(refine_scale=off).refine_scale is None
    assert TrackingSettings(refine_scale=2).refine_scale == 2.0
    s = TrackingSettings(iters=3, refine_scale=2)
    assert s.second_pass_iters == 3 and s.replace(refine_iters=5).second_pass_iters == 5


def test_replace_keeps_none_and_rejects_unknown_names():
    s = TrackingSettings(window=8)
    assert s.replace(window=None, iters=None) is s
    assert s.replace(window=4).window == 4 and s.window == 8  # frozen: a copy
    with pytest.raises(TypeError, match="unknown tracking setting"):
        s.replace(windows=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.window = 3


def test_far_from_validated_warns(shipped, caplog):
    info = shipped[2]
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.settings"):
        assert resolve(info, window=3).window == 3
    assert "window 3 is far from the validated 8" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.settings"):
        resolve(info, window=8, iters=5, short_side=256)  # close to the validated ones
        resolve(None, window=3)  # weights that record nothing: nothing to compare with
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING, logger="objtrack_jax.settings"):
        resolve(info, iters=16, resolution=(1024, 1024))
    assert "iters 16 is far from the 4 iterations" in caplog.text
    assert "model short side 1024 is far from the validated 192" in caplog.text


def _weights_copy(tmp_path, edit):
    """The shipped weights copied to ``tmp_path`` with ``edit(config)`` applied to config.json."""
    src = model_io.weights_path()
    out = tmp_path / "w"
    out.mkdir()
    shutil.copy(os.path.join(src, model_io.PARAMS_FILE), out / model_io.PARAMS_FILE)
    with open(os.path.join(src, model_io.CONFIG_FILE)) as f:
        cfg = json.load(f)
    edit(cfg)
    (out / model_io.CONFIG_FILE).write_text(json.dumps(cfg))
    return str(out), str(out / model_io.CONFIG_FILE)


@pytest.mark.parametrize("section, key, value, needle", [
    ("model", "latent_dim", -64, "model.latent_dim must be an integer >= 1, got -64"),
    ("model", "encoder_dims", [32, -48, 64, 64], "model.encoder_dims must be a non-empty list"),
    ("model", "visibility_head", "yes", "model.visibility_head must be true or false"),
    ("inference", "window", -3, "info.inference: window must be >= 2 .*got -3"),
    ("inference", "refine_scale", 20, "info.inference: refine_scale must be 0"),
])
def test_bad_config_json_names_file_key_and_value(tmp_path, section, key, value, needle):
    def edit(cfg):
        (cfg["model"] if section == "model" else cfg["info"]["inference"])[key] = value

    path, cfg_path = _weights_copy(tmp_path, edit)
    with pytest.raises(ValueError, match=needle) as e:
        model_io.load_model(path)
    assert cfg_path in str(e.value)


# ------------------------------------------------------------------------------------------------
# The Python API gives what the CLI gives
# ------------------------------------------------------------------------------------------------


def test_track_queries_defaults_equal_objtrack_track(clip, cached_model, tmp_path):
    """``track_queries(*load_model(), video, queries)`` with no options = ``objtrack track`` on the
    same frames and queries (queries at three frames: forward and backward segments)."""
    from objtrack_jax.cli_eval import track_main

    video, folder = clip
    q = np.array([[0, 20.0, 30.0], [0, 60.5, 100.25], [2, 48.0, 64.0], [2, 10.0, 120.0],
                  [5, 80.0, 20.0], [5, 40.0, 90.0]], np.float32)
    np.save(tmp_path / "q.npy", q)
    api, api_vis, _ = objtrack_jax.track_queries(*objtrack_jax.load_model(), video, q)
    cli = track_main([folder, "--queries", str(tmp_path / "q.npy"), "--out",
                      str(tmp_path / "out.mp4"), "--no-progress"])
    assert cli["settings"] == from_info(cached_model[2])  # the validated ones, second pass on
    assert api.shape == (6, 6, 2)
    err = float(np.abs(api - cli["tracks"]).max())
    print(f"track_queries vs objtrack track: max |diff| {err:.2e} px")
    assert err <= 1e-3
    np.testing.assert_array_equal(api_vis, cli["visible"])
    # and a setting of another layer's default would have changed them (the test can fail)
    other, _, _ = objtrack_jax.track_queries(*objtrack_jax.load_model(), video, q, refine_scale=0)
    assert np.abs(other - api).max() > 1e-2


def test_calling_conventions(shipped, clip):
    model, params, info = shipped
    video, _ = clip
    q = np.array([[1, 20.0, 30.0]], np.float32)
    with pytest.raises(TypeError, match="the weights' info .from load_model. or a TrackingSettings"):
        tracking.track_queries(model, params, "not info", video, q)
    with pytest.raises(TypeError, match=r"takes \(model, params, \[info or settings,\] video"):
        tracking.track_queries(model, params, video)


# ------------------------------------------------------------------------------------------------
# Every entry point resolves the same settings for the shipped weights
# ------------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from objtrack_jax.data_pipelines import synthetic

    root = str(tmp_path_factory.mktemp("synth"))
    synthetic.generate_dataset(root, num_seqs={"test": 1}, frames=3, size=(128, 128),
                               num_points=8, progress=False, write_depths=False)
    return root


def test_entry_points_resolve_the_same_settings(cached_model, clip, synth_root, tmp_path,
                                                monkeypatch):
    """Python API, ``objtrack track`` / ``eval`` / ``demo`` (both modes), ``evaluate`` and
    ``scripts/error_profile.py``: each reaches the engine (``tracking.run_tracking``) with the
    shipped weights' validated settings (the resolution aside: each entry point's video size)."""
    from objtrack_jax import cli_eval, demo, video_tracking

    seen = []

    def record(model, params, video, queries, settings, progress=False):
        seen.append(settings)
        raise _Stop

    monkeypatch.setattr(tracking, "run_tracking", record)
    monkeypatch.setattr(evaluation, "run_tracking", record)
    video, folder = clip
    out = str(tmp_path / "o.mp4")
    calls = {
        "track_queries": lambda: objtrack_jax.track_queries(*objtrack_jax.load_model(), video,
                                                            np.zeros((1, 3), np.float32)),
        "track_video": lambda: video_tracking.track_video(*objtrack_jax.load_model(), folder, out,
                                                          echo=None),
        "objtrack track": lambda: cli_eval.track_main([folder, "--out", out, "--no-progress"]),
        "objtrack demo --video": lambda: demo.demo_main(["--video", folder, "--out", str(tmp_path)]),
        "objtrack demo": lambda: demo.demo_main(["--out", str(tmp_path), "--scenes", "1",
                                                 "--frames", "4", "--size", "128x128"]),
        "objtrack eval": lambda: cli_eval.eval_main(["--dataset", "synthetic", "--data-root",
                                                     synth_root, "--no-progress"]),
        "evaluate": lambda: evaluation.evaluate("synthetic", synth_root, *objtrack_jax.load_model(),
                                                progress=False),
        "error_profile": lambda: _error_profile().main(["--data-root", synth_root]),
    }
    for name, call in calls.items():
        with pytest.raises(_Stop):
            call()
        assert len(seen) == 1, name
        got = dataclasses.replace(seen.pop(), resolution=None)
        assert got == from_info(cached_model[2]), name


def test_in_training_evaluation_takes_one_settings_object(tmp_path):
    from objtrack_jax.configs import objprior
    from objtrack_jax.train import loop

    c = objprior.get_config("tiny")
    (tmp_path / c.eval.split).mkdir()
    kw = loop.eval_settings(c, str(tmp_path))
    assert isinstance(kw["settings"], TrackingSettings)
    assert (kw["settings"].window, kw["settings"].iters) == (c.eval.window, c.eval.iters)
    assert not {"window", "iters", "carry", "chunk_size"} & set(kw)  # no second copy


def _error_profile():
    spec = importlib.util.spec_from_file_location(
        "error_profile", os.path.join(HERE, "..", "scripts", "error_profile.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_settings_module_is_the_only_home():
    """No other module defines tracking defaults of its own (the values live in settings.py)."""
    src = os.path.join(HERE, "..", "objtrack_jax")
    for name in ("tracking.py", "video_tracking.py", "evaluation.py", "model_io.py", "demo.py",
                 "cli_eval.py"):
        text = open(os.path.join(src, name)).read()
        for pattern in ("window: int = ", "iters: int = ", "DEFAULT_SHORT_SIDE =",
                        "INFERENCE_FALLBACK"):
            assert pattern not in text, (name, pattern)
    assert settings_lib.DEFAULT_SHORT_SIDE == 384


# ------------------------------------------------------------------------------------------------
# One way to pass settings: the same request gives the same settings and the same messages
# ------------------------------------------------------------------------------------------------

# a request away from the shipped weights' validated settings in every field it names
REQUEST = dict(window=6, iters=3, refine_scale=0, resolution=(128, 160), carry="paper",
               anchor=False, vis_threshold=0.5)
REQUEST_FLAGS = ["--window", "6", "--iters", "3", "--refine-scale", "0", "--resolution", "128x160",
                 "--carry", "paper", "--no-anchor", "--set", "vis_threshold=0.5"]
REQUEST_SET = [a for k, v in [("window", "6"), ("iters", "3"), ("refine_scale", "0"),
                              ("resolution", "128x160"), ("carry", "paper"), ("anchor", "false"),
                              ("vis_threshold", "0.5")] for a in ("--set", f"{k}={v}")]
REQUEST_FORM = {"window": "6", "iters": "3", "refine_scale": "0", "resolution": "128x160",
                "carry": "paper", "anchor": "false", "vis_threshold": "0.5"}


def _recording(monkeypatch):
    """The settings each call brings to the engine (tracking.run_tracking, the online tracker)."""
    from objtrack_jax import online

    seen = []

    def record(model, params, video, queries, settings, progress=False):
        seen.append(settings)
        raise _Stop

    def warm_up(self):
        seen.append(self.settings)
        raise _Stop

    monkeypatch.setattr(tracking, "run_tracking", record)
    monkeypatch.setattr(evaluation, "run_tracking", record)
    monkeypatch.setattr(online.OnlineTracker, "warm_up", warm_up)
    return seen


def test_python_api_cli_and_app_resolve_the_same_settings(cached_model, clip, synth_root,
                                                           tmp_path, monkeypatch):
    """One request (seven fields away from the validated settings) given as keywords, as
    ``settings=`` (object and dict), as ``objtrack track`` / ``--online`` / ``demo`` / ``eval``
    flags or ``--set``, to ``OnlineTracker`` and as the app's form: one TrackingSettings."""
    from objtrack_jax import cli_eval, cli_online, demo, video_tracking
    from objtrack_jax.app.engine import OpenedVideo, Workspace
    from objtrack_jax.online import OnlineTracker

    model, params, info = cached_model
    want = resolve(info, **REQUEST)
    validated = from_info(info)
    assert all(getattr(want, k) != getattr(validated, k) for k in REQUEST)  # the test can fail
    seen = _recording(monkeypatch)
    video, folder = clip
    q = np.zeros((1, 3), np.float32)
    out = str(tmp_path / "o.mp4")
    ws = Workspace(model, params, info, str(tmp_path / "app"))
    fake = OpenedVideo("0123456789ab", "clip.mp4", "/nonexistent", 6, 96, 128, 10.0, "/none")
    ws.videos[fake.id] = fake
    calls = {
        "track_queries(**kw)": lambda: tracking.track_queries(model, params, info, video, q,
                                                              **REQUEST),
        "track_queries(settings=s)": lambda: tracking.track_queries(model, params, video, q,
                                                                    settings=want),
        "track_queries(settings=dict)": lambda: tracking.track_queries(
            model, params, video, q, settings=want.as_dict()),
        "track_video(**kw)": lambda: video_tracking.track_video(model, params, info, folder, out,
                                                                echo=None, **REQUEST),
        "objtrack track flags": lambda: cli_eval.track_main([folder, "--out", out, "--no-progress"]
                                                            + REQUEST_FLAGS),
        "objtrack track --set": lambda: cli_eval.track_main([folder, "--out", out, "--no-progress"]
                                                            + REQUEST_SET),
        "objtrack track --online": lambda: cli_online.online_main([folder, "--out", out, "--grid", "1"]
                                                                  + REQUEST_FLAGS),
        "objtrack demo --video": lambda: demo.demo_main(["--video", folder, "--out",
                                                         str(tmp_path)] + REQUEST_SET),
        "OnlineTracker(settings=info, **kw)": lambda: OnlineTracker(
            model, params, (96, 128), 2, settings=info, **REQUEST).warm_up(),
        "OnlineTracker(settings=dict)": lambda: OnlineTracker(
            model, params, (96, 128), 2, settings=want.as_dict()).warm_up(),
    }
    try:
        for name, call in calls.items():
            with pytest.raises(_Stop):
                call()
            assert seen.pop() == want, name
        app = ws.check_run(fake.id, [{"t": 0, "x": 3, "y": 3}], REQUEST_FORM).settings
        assert app == want, "app"
    finally:
        ws.close()
    # objtrack eval: --resolution is the protocol's frame size, the tracking resolution by --set
    with pytest.raises(_Stop):
        cli_eval.eval_main(["--dataset", "synthetic", "--data-root", synth_root, "--no-progress"]
                           + REQUEST_SET)
    got = seen.pop()
    assert dataclasses.replace(got, resolution=None) == dataclasses.replace(want, resolution=None)


def test_track_queries_takes_resolution(shipped, clip, monkeypatch):
    """``resolution=(h, w)`` (the field's name) works; ``resize_to=`` is its deprecated alias."""
    model, params, info = shipped
    video, _ = clip
    seen = _recording(monkeypatch)
    q = np.zeros((1, 3), np.float32)
    with pytest.raises(_Stop):
        tracking.track_queries(model, params, info, video, q, resolution=(128, 160))
    assert seen.pop().resolution == (128, 160)
    with pytest.warns(DeprecationWarning, match="resize_to= is deprecated; use resolution="):
        with pytest.raises(_Stop):
            tracking.track_queries(model, params, info, video, q, resize_to=(128, 160))
    assert seen.pop().resolution == (128, 160)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="both resize_to= and"):
        tracking.track_queries(model, params, info, video, q, resize_to=(128, 160),
                               resolution=(160, 160))


def test_a_bad_value_gets_the_same_message_everywhere(shipped, clip, tmp_path, capsys):
    """The library's message for ``window=1`` from every Python entry point and ``--set``; the
    flags and the app's form state the same rule (minimum and reason) in their own words."""
    from objtrack_jax import cli, functional, video_tracking
    from objtrack_jax.app.engine import AppError, resolve_settings
    from objtrack_jax.online import OnlineTracker

    model, params, info = shipped
    video, folder = clip
    q = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError) as e:
        TrackingSettings(window=1)
    msg = str(e.value)
    assert msg == "window must be >= 2 (frames per window; windows overlap by one frame), got 1"
    for name, call in {
            "resolve": lambda: resolve(info, window=1),
            "track_queries": lambda: tracking.track_queries(model, params, info, video, q, window=1),
            "track_queries(settings=dict)": lambda: tracking.track_queries(
                model, params, video, q, settings={"window": 1}),
            "track_video": lambda: video_tracking.track_video(model, params, info, folder,
                                                              echo=None, window=1),
            "OnlineTracker": lambda: OnlineTracker(model, params, (96, 128), settings=info,
                                                   window=1),
            "make_tracker": lambda: functional.make_tracker(model, {"window": 1}),
    }.items():
        with pytest.raises(ValueError) as got:
            call()
        assert str(got.value) == msg, name
    # the app, a field outside its form: the library's message too
    app = _error(lambda: resolve_settings(info, {"chunk_size": "0"}))
    assert isinstance(app, AppError) and str(app) == str(_error(lambda: TrackingSettings(
        chunk_size=0)))
    assert cli.main(["track", folder, "--set", "window=1"]) == 2
    assert f"argument --set: {msg}" in capsys.readouterr().err
    rule = "must be >= 2 (frames per window; windows overlap by one frame)"
    assert cli.main(["track", folder, "--window", "1"]) == 2
    assert f"argument --window: 1 is not allowed: {rule}" in capsys.readouterr().err
    with pytest.raises(AppError, match=rf"window: 1 is not allowed: {re.escape(rule)}"):
        resolve_settings(info, {"window": 1})


def _error(call) -> Exception:
    try:
        call()
    except Exception as e:  # noqa: BLE001
        return e
    raise AssertionError("no error")


def test_unknown_names_are_named_with_the_fields(shipped, clip, capsys):
    from objtrack_jax import cli, video_tracking
    from objtrack_jax.app.engine import AppError, resolve_settings
    from objtrack_jax.online import OnlineTracker

    model, params, info = shipped
    video, folder = clip
    q = np.zeros((1, 3), np.float32)
    fields = "window, iters, short_side, resolution, refine_scale"
    for name, call in {
            "track_queries": lambda: tracking.track_queries(model, params, info, video, q, windw=3),
            "settings=dict": lambda: tracking.track_queries(model, params, video, q,
                                                            settings={"windw": 3}),
            "track_video": lambda: video_tracking.track_video(model, params, info, folder,
                                                              echo=None, windw=3),
            "OnlineTracker": lambda: OnlineTracker(model, params, (96, 128), settings=info,
                                                   windw=3),
            "replace": lambda: from_info(info).replace(windw=3),
    }.items():
        e = _error(call)
        assert isinstance(e, settings_lib.UnknownSettingError) and isinstance(e, ValueError), name
        assert "unknown tracking setting 'windw'" in str(e) and fields in str(e), name
    assert cli.main(["track", folder, "--set", "windw=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown tracking setting 'windw'" in err and fields in err
    with pytest.raises(AppError, match="unknown setting 'windw'; the settings are .'window', "):
        resolve_settings(info, {"windw": 3})
    with pytest.raises(AppError, match="settings must be an object of name: value pairs, got list"):
        resolve_settings(info, [8])
    # a dict of settings where the weights' info belongs is refused, not read as "no settings"
    with pytest.raises(ValueError, match="got a dict of settings .'window'.: pass it as settings="):
        from_info({"window": 3})
    assert resolve({"window": 3}) == TrackingSettings(window=3)  # resolve reads it as settings


def test_parse_value_reads_text_as_the_checks_expect():
    parse = settings_lib.parse_value
    assert parse("window", " 8 ") == 8 and parse("resolution", "128x160") == (128, 160)
    assert parse("resolution", "128,160") == (128, 160) and parse("refine_scale", "2") == 2.0
    assert parse("anchor", "off") is False and parse("bucket", "yes") is True
    assert parse("carry", "paper") == "paper" and parse("window", 8) == 8
    with pytest.raises(ValueError, match="window must be an integer"):
        TrackingSettings(window=parse("window", "8.5"))
    with pytest.raises(ValueError, match="anchor must be True or False"):
        TrackingSettings(anchor=parse("anchor", "maybe"))
