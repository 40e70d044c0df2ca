"""Dataset format round trip and errors, sequence loader, and `wm-plan collect` end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from typing import Any

import numpy as np
import pytest
import torch

from wm_planning.data import Dataset, DatasetError, DatasetWriter, Episode, SequenceLoader


def make_episode(t: int, seed: int, offset: float = 0.0) -> Episode:
    rng = np.random.default_rng(seed)
    steps = np.arange(t + 1, dtype=np.float32) + offset  # obs encode (episode, step)
    return Episode(
        obs={
            "state": np.stack([steps, rng.normal(size=t + 1).astype(np.float32)], 1),
            "proprio": steps[:, None].copy(),
            "pixels": rng.integers(0, 256, (t + 1, 8, 8, 3), dtype=np.uint8),
        },
        actions=np.stack([steps[:-1], steps[:-1]], 1),
        rewards=steps[:-1] * 0.5,
        success=rng.random(t) > 0.5,
        terminated=np.zeros(t, bool),
        truncated=np.arange(t) == t - 1,
        seed=seed,
        physics={"mass_scale": rng.uniform(0.9, 1.1, 5), "latency": np.asarray(1)},
    )


def write(path: Path, eps: list[Episode]) -> Dataset:
    w = DatasetWriter(path, "test-env", {"name": "test-env"}, config={"k": 1})
    for e in eps:
        w.add(e)
    return Dataset(path)


def test_round_trip_bit_exact(tmp_path: Path) -> None:
    eps = [make_episode(7, 0), make_episode(4, 1, 100.0)]
    ds = write(tmp_path / "d", eps)
    assert len(ds) == 2
    assert ds.env_name == "test-env"
    assert ds.meta["num_steps"] == 11
    assert ds.meta["config"] == {"k": 1}
    for a, b in zip(eps, ds, strict=True):
        for k in a.obs:
            assert a.obs[k].dtype == b.obs[k].dtype
            np.testing.assert_array_equal(a.obs[k], b.obs[k])
        for name in ("actions", "rewards", "success", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        for k in a.physics:
            np.testing.assert_array_equal(a.physics[k], b.physics[k])
        assert a.seed == b.seed
    with pytest.raises(FileExistsError):
        DatasetWriter(tmp_path / "d", "test-env", {})


def test_version_mismatch(tmp_path: Path) -> None:
    write(tmp_path / "d", [make_episode(3, 0)])
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    meta["version"] = 999
    (tmp_path / "d" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="format version 999"):
        Dataset(tmp_path / "d")
    with pytest.raises(DatasetError, match=r"meta\.json missing"):
        Dataset(tmp_path / "nothing")


def test_corrupted_files(tmp_path: Path) -> None:
    ds = write(tmp_path / "d", [make_episode(3, 0)])
    f = tmp_path / "d" / ds.meta["episodes"][0]["file"]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="checksum"):
        ds.load(0)
    with pytest.raises(DatasetError, match="corrupted"):
        Dataset(tmp_path / "d", verify=False).load(0)  # caught by the zip CRC
    f.write_bytes(bytes(data[:100]))  # truncated
    with pytest.raises(DatasetError, match="corrupted"):
        Dataset(tmp_path / "d", verify=False).load(0)
    (tmp_path / "d" / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="corrupted"):
        Dataset(tmp_path / "d")


def test_episode_validation() -> None:
    e = make_episode(3, 0)
    with pytest.raises(ValueError, match=r"T\+1"):
        Episode(
            {"state": np.zeros((3, 2))},
            e.actions,
            e.rewards,
            e.success,
            e.terminated,
            e.truncated,
            0,
        )
    with pytest.raises(ValueError, match="rewards"):
        Episode(e.obs, e.actions, e.rewards[:2], e.success, e.terminated, e.truncated, 0)


def test_loader_shapes_and_windows_stay_in_episodes() -> None:
    eps = [make_episode(t, i, 1000.0 * i) for i, t in enumerate([5, 12, 3, 9])]
    loader = SequenceLoader(eps, seq_len=4, batch_size=256)
    assert loader.num_windows == 2 + 9 + 0 + 6
    b = loader.sample(torch.Generator().manual_seed(0))
    assert b["obs.state"].shape == (256, 5, 2)
    assert b["obs.pixels"].shape == (256, 5, 8, 8, 3)
    assert b["obs.pixels"].dtype == torch.uint8
    assert b["action"].shape == (256, 4, 2)
    assert b["reward"].shape == (256, 4)
    assert b["success"].dtype == torch.bool
    step = b["obs.proprio"][..., 0]
    # obs encode 1000*episode + step: consecutive steps of a single episode, never crossing
    assert torch.all(step[:, 1:] - step[:, :-1] == 1)
    assert torch.all(step // 1000 == b["episode"][:, None])
    assert torch.all(step % 1000 == b["start"][:, None] + torch.arange(5))
    np.testing.assert_array_equal(b["action"][..., 0].numpy(), step[:, :-1].numpy())
    assert set(b["episode"].tolist()) == {0, 1, 3}  # episode 2 is shorter than L
    # deterministic per generator state
    b2 = loader.sample(torch.Generator().manual_seed(0))
    assert torch.equal(b["episode"], b2["episode"])
    assert torch.equal(b["start"], b2["start"])
    with pytest.raises(ValueError, match="seq_len"):
        SequenceLoader(eps, seq_len=50, batch_size=2)


def test_collect_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wm_planning.cli import main

    out = tmp_path / "reacher"
    rc = main(
        [
            "collect",
            "env=dmc-reacher-easy",
            "policy=correlated",
            "episodes=2",
            f"out={out}",
            "pixels=true",
            "image_size=16",
            "action_repeat=50",
            "randomization=light",
            "seed=3",
        ]
    )
    assert rc == 0
    assert "env steps/s" in capsys.readouterr().out
    ds = Dataset(out)
    assert len(ds) == 2
    assert ds.meta["spec"]["action_repeat"] == 50
    ep = ds.load(1)
    assert len(ep) == 20
    assert ep.seed == 4
    assert ep.truncated[-1]
    assert ep.obs["pixels"].shape == (21, 16, 16, 3)
    assert ep.physics["seed"] == 4
    assert ep.physics["mass_scale"].shape == (4,)
    loader = SequenceLoader(ds, seq_len=8, batch_size=4)
    assert loader.sample(torch.Generator())["obs.state"].shape == (4, 9, 6)
    with pytest.raises(ValueError, match="unknown randomization knobs"):
        main(["collect", f"out={tmp_path / 'x'}", "+randomization.gravity=1"])
    with pytest.raises(KeyError, match="unknown policy"):
        main(["collect", f"out={tmp_path / 'y'}", "policy=telepathy", "action_repeat=250"])


def test_planner_policy_moves_the_arm_to_the_target() -> None:
    """`policy=planner`: receding-horizon MPPI on the env's exact dynamics as the collector."""
    from wm_planning import envs
    from wm_planning.data import policies

    env = envs.make("planar-reach")
    policy = policies.make(
        "planner",
        env,
        horizon=8,
        num_samples=32,
        num_elites=8,
        iterations=1,
        temperature=0.05,
        init_std=0.25,
    )
    obs = env.reset(seed=1)
    policy.reset(1)
    start, _ = env.evaluate()
    for _ in range(30):
        obs, *_ = env.step(policy.act(obs))
    end, _ = env.evaluate()
    assert end < 0.5 * start
    env.close()


def test_planner_policy_plans_inside_a_datasets_action_box(tmp_path: Path) -> None:
    """`box_from=DATA`: every collected action lies in the central 99 % of DATA's actions (what a
    visual model trained on DATA plans within), and the planner still makes progress in it."""
    from wm_planning import envs
    from wm_planning.data import policies
    from wm_planning.training.visual_checkpoint import action_box

    env = envs.make("planar-reach")
    rng = np.random.default_rng(0)
    a_dim = env.spec.action_dim
    eps = []
    for i in range(3):  # a dataset whose actions are a quarter of the env's box
        ep = make_episode(40, seed=i)
        ep.actions = rng.uniform(-0.25, 0.25, (40, a_dim)).astype(np.float32)
        eps.append(ep)
    write(tmp_path / "d", eps)
    box = action_box([e.actions for e in eps])
    policy = policies.make("planner", env, horizon=8, num_samples=32, num_elites=8,
                           iterations=1, temperature=0.05, init_std=0.5,
                           box_from=str(tmp_path / "d"))  # fmt: skip
    obs = env.reset(seed=1)
    policy.reset(1)
    start, _ = env.evaluate()
    acts = []
    for _ in range(30):
        acts.append(policy.act(obs))
        obs, *_ = env.step(acts[-1])
    acts_a = np.array(acts)
    assert (acts_a >= np.array(box["low"]) - 1e-6).all()
    assert (acts_a <= np.array(box["high"]) + 1e-6).all()
    assert np.abs(acts_a).max() > 0.1  # it does use the box, not a sliver of it
    assert env.evaluate()[0] < start
    with pytest.raises(DatasetError, match="not a dataset"):
        policies.make("planner", env, box_from=str(tmp_path / "none"))
    env.close()


@pytest.mark.parametrize("name", ["planar-reach", "panda-goal_reach"])
def test_scripted_policy_heads_for_the_goal(name: str) -> None:
    from wm_planning import envs
    from wm_planning.data import policies

    env = envs.make(name)
    policy = policies.make("scripted", env, noise=0.05)
    obs = env.reset(seed=2)
    policy.reset(2)
    start, _ = env.evaluate()
    for _ in range(40):
        obs, *_ = env.step(policy.act(obs))
    end, _ = env.evaluate()
    assert end < 0.3 * start
    env.close()


def test_scripted_policy_refuses_tasks_without_a_goal_configuration() -> None:
    from wm_planning import envs
    from wm_planning.data import policies

    with pytest.raises(ValueError, match="goal configuration"):
        policies.make("scripted", envs.make("panda-push"))


def test_scripted_push_policy_pushes_the_block_onto_its_target() -> None:
    """Aimed at the target (no spread, no random directions) it succeeds; with its defaults the
    block still moves (push data); other tasks are refused; ee_jacobian is the true Jacobian."""
    from wm_planning import envs
    from wm_planning.data import policies

    env = envs.make("panda-push")
    aimed = policies.make("scripted_push", env, spread=0.0, random_dir=0.0, noise=0.02)
    default = policies.make("scripted_push", env)
    for seed in (0, 1):
        for policy, check in ((aimed, "success"), (default, "moved")):
            obs = env.reset(seed=seed)
            policy.reset(seed)
            b0 = env.data.sensor("block_pos").data[:2].copy()
            for _ in range(env.spec.episode_length):
                obs, *_ = env.step(policy.act(obs))
            moved = np.linalg.norm(env.data.sensor("block_pos").data[:2] - b0)
            if check == "success":
                assert env.evaluate()[1], f"seed {seed}: block {env.evaluate()[0]:.3f} m away"
            else:
                assert moved > 0.03
    # finite differences of the ee position against the analytic Jacobian
    inner: Any = env
    q = np.asarray(inner.robot.home, dtype=float)
    inner.set_joints(q)
    jac, p0, eps = inner.ee_jacobian(), inner.ee_pos().copy(), 1e-6
    fd = np.zeros_like(jac)
    for i in range(len(q)):
        dq = q.copy()
        dq[i] += eps
        inner.set_joints(dq)
        fd[:, i] = (inner.ee_pos() - p0) / eps
    np.testing.assert_allclose(jac, fd, atol=1e-4)
    env.close()
    with pytest.raises(ValueError, match="push task"):
        policies.make("scripted_push", envs.make("planar-goal_reach"))


def test_data_support_is_mahalanobis_over_the_data(tmp_path: Path) -> None:
    """DataSupport: the radius holds its quantile of the data; a point across the data's
    correlation is far outside although inside every axis's range; proprio_support reads a
    dataset's proprioception; bad input is refused."""
    from wm_planning.data.support import DataSupport, proprio_support

    rng = np.random.default_rng(0)
    data = rng.normal(size=(20000, 2)) @ np.array([[1.0, 0.0], [0.9, 0.1]])
    sup = DataSupport.fit(data, quantile=0.99)
    assert np.mean(sup.distance(data) > sup.radius) == pytest.approx(0.01, abs=2e-3)
    assert 2.9 < sup.radius < 3.2  # χ² with 2 degrees of freedom: sqrt(9.21) = 3.03
    assert sup.distance(np.array([1.0, -1.0])) > 4 * sup.radius  # inside both axes' ranges
    assert sup.distance(data[:5]).shape == (5,)
    with pytest.raises(ValueError, match="N > E"):
        DataSupport.fit(data[:2])
    with pytest.raises(ValueError, match="finite"):
        DataSupport.fit(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="of 2 values"):
        sup.distance(np.zeros(3))
    const = DataSupport.fit(np.c_[rng.normal(size=500), np.ones(500)])  # a joint that never moves
    assert np.isfinite(const.radius)
    assert const.distance(np.array([0.0, 1.1])) > 100 * const.radius

    write(tmp_path / "a", [make_episode(20, 0), make_episode(9, 1, 100.0)])
    write(tmp_path / "b", [make_episode(5, 2, 50.0)])
    fitted = proprio_support([tmp_path / "a", tmp_path / "b"])
    assert fitted.count == 21 + 10 + 6  # T+1 observations per episode
    assert fitted.mean == pytest.approx([(210 + 1045 + 315) / 37])  # steps 0-20, 100-109, 50-55
    with pytest.raises(DatasetError, match="not a dataset"):
        proprio_support([tmp_path / "missing"])
