"""Each randomization knob changes what it claims, nominal changes nothing, seeds are
deterministic. DMC reacher (motors) / cheetah (contacts) and, when present, a position-servo arm."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from wm_planning import envs
from wm_planning.config import load_group
from wm_planning.envs.randomization import RandomizationConfig, RandomizedEnv

ACTS = np.random.default_rng(0).uniform(-1, 1, (12, 2))


@pytest.fixture(scope="module")
def reacher() -> envs.MujocoEnv:
    env = envs.make("dmc-reacher-easy", pixels=True, image_size=(32, 32))
    yield env
    env.close()


# References go through a nominal wrapper: it restores the nominal model that a wrapper of an
# earlier test left perturbed in the shared env (and is bit-identical to the bare env).


def rollout(env: envs.Env, acts: np.ndarray = ACTS, seed: int = 3) -> list[dict[str, np.ndarray]]:
    out = [env.reset(seed=seed)]
    out += [env.step(a)[0] for a in acts]
    return out


def wrap(env: envs.MujocoEnv, **knobs: float) -> RandomizedEnv:
    return RandomizedEnv(env, RandomizationConfig(**knobs))


def qpos_path(env: envs.MujocoEnv, acts: np.ndarray = ACTS, seed: int = 3) -> np.ndarray:
    env.reset(seed=seed)
    path = []
    for a in acts:
        env.step(a)
        path.append(env.data.qpos.copy())
    return np.array(path)


def test_nominal_is_bit_identical() -> None:
    reacher = envs.make("dmc-reacher-easy", pixels=True, image_size=(32, 32))
    ref = rollout(reacher)
    for cfg in (
        RandomizationConfig(),
        RandomizationConfig(**load_group("randomization", "nominal")),
    ):
        got = rollout(RandomizedEnv(reacher, cfg))
        for a, b in zip(ref, got, strict=True):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])


def test_mass(reacher: envs.MujocoEnv) -> None:
    ref = qpos_path(wrap(reacher))
    nominal_mass = reacher.model.body_mass.copy()
    env = wrap(reacher, mass=0.4)
    path = qpos_path(env)
    assert not np.allclose(env.model.body_mass[1:], nominal_mass[1:])
    np.testing.assert_allclose(
        env.model.body_mass, nominal_mass * env.physics_params()["mass_scale"]
    )
    assert np.abs(path - ref).max() > 1e-3


def test_friction() -> None:
    env = envs.make("dmc-cheetah-run")
    nominal = env.model.geom_friction.copy()
    acts = np.random.default_rng(1).uniform(-1, 1, (15, 6))
    ref = qpos_path(env, acts)
    w = wrap(env, friction=0.5)
    path = qpos_path(w, acts)
    np.testing.assert_allclose(
        w.model.geom_friction, nominal * w.physics_params()["friction_scale"][:, None]
    )
    assert not np.allclose(w.model.geom_friction, nominal)
    assert np.abs(path - ref).max() > 1e-3  # feet slide differently


def test_damping(reacher: envs.MujocoEnv) -> None:
    ref = qpos_path(wrap(reacher))
    nominal = reacher.model.dof_damping.copy()
    w = wrap(reacher, damping=0.5)
    path = qpos_path(w)
    np.testing.assert_allclose(w.model.dof_damping, nominal * w.physics_params()["damping_scale"])
    assert np.abs(path - ref).max() > 1e-3


def test_gain_motor(reacher: envs.MujocoEnv) -> None:
    ref = qpos_path(wrap(reacher))
    nominal = reacher.model.actuator_gear[:, 0].copy()
    w = wrap(reacher, gain=0.5)
    path = qpos_path(w)
    np.testing.assert_allclose(
        w.model.actuator_gear[:, 0], nominal * w.physics_params()["gain_scale"]
    )
    assert np.abs(path - ref).max() > 1e-3


def test_encoder_offsets_shift_observation_not_state(reacher: envs.MujocoEnv) -> None:
    ref = rollout(wrap(reacher))
    ref_q = qpos_path(wrap(reacher))
    w = wrap(reacher, encoder_offset=0.1)
    got = rollout(w)
    off = w.physics_params()["encoder_offset"]
    assert np.all(np.abs(off) > 0)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(b["state"][:2] - a["state"][:2], off[:2], atol=1e-6)
        np.testing.assert_allclose(b["proprio"][:2] - a["proprio"][:2], off[:2], atol=1e-6)
        np.testing.assert_array_equal(b["state"][2:], a["state"][2:])
    np.testing.assert_array_equal(qpos_path(w), ref_q)  # the simulation is untouched


@pytest.mark.parametrize(
    "knobs",
    [
        {"camera_pos": 0.05},
        {"camera_rot": 8.0},
        {"camera_fov": 8.0},
        {"light": 0.6},
        {"color": 0.3},
    ],
)
def test_visual_knobs_change_image_only(reacher: envs.MujocoEnv, knobs: dict[str, float]) -> None:
    ref = rollout(wrap(reacher), ACTS[:2])
    got = rollout(wrap(reacher, **knobs), ACTS[:2])
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(a["state"], b["state"])
        assert np.abs(a["pixels"].astype(int) - b["pixels"]).mean() > 0.5


def test_obs_and_pixel_noise_change_obs_not_state(reacher: envs.MujocoEnv) -> None:
    ref_q = qpos_path(wrap(reacher))
    ref = rollout(wrap(reacher))
    w = wrap(reacher, obs_noise=0.05, pixel_noise=10.0)
    got = rollout(w)
    for a, b in zip(ref, got, strict=True):
        for k in ("state", "proprio", "pixels"):
            assert not np.array_equal(a[k], b[k])
        assert 0.01 < np.std(b["state"] - a["state"]) < 0.2
    np.testing.assert_array_equal(qpos_path(w), ref_q)


def test_action_noise_changes_trajectory(reacher: envs.MujocoEnv) -> None:
    ref = qpos_path(wrap(reacher))
    w = wrap(reacher, action_noise=0.3)
    assert np.abs(qpos_path(w) - ref).max() > 1e-3
    np.testing.assert_array_equal(qpos_path(w), qpos_path(w))  # deterministic per seed


@pytest.mark.parametrize("n", [1, 3])
def test_latency_delays_by_exactly_n_steps(reacher: envs.MujocoEnv, n: int) -> None:
    w = wrap(reacher, latency=n)
    got = qpos_path(w)
    shifted = np.concatenate([np.zeros((n, 2)), ACTS[:-n]])  # noop (box centre) first
    np.testing.assert_array_equal(got, qpos_path(wrap(reacher), shifted))


def test_control_rate_changes_distance_per_step(reacher: envs.MujocoEnv) -> None:
    dt = reacher.model.opt.timestep
    push = np.ones((4, 2))
    ref = qpos_path(wrap(reacher), push)
    w = wrap(reacher, control_rate=0.5)
    got = qpos_path(w, push)
    scale = float(w.physics_params()["timestep_scale"])
    assert w.model.opt.timestep == pytest.approx(dt * scale)
    assert abs(scale - 1) > 0.01
    travelled = lambda p: np.abs(p[-1] - p[0]).sum()  # noqa: E731
    ratio = travelled(got) / travelled(ref)
    assert (ratio > 1.05) if scale > 1 else (ratio < 0.95)
    assert w.data.time == pytest.approx(len(push) * w.n_substeps * dt * scale)


def test_seeds_and_no_accumulation(reacher: envs.MujocoEnv) -> None:
    cfg = RandomizationConfig(**load_group("randomization", "strong"))
    w = RandomizedEnv(reacher, cfg)
    w.reset(seed=1)
    p1, m1 = w.physics_params(), w.model.body_mass.copy()
    w.reset(seed=2)
    p2 = w.physics_params()
    w.reset(seed=1)
    p1b = w.physics_params()
    np.testing.assert_array_equal(w.model.body_mass, m1)  # applied to the pristine nominal
    for k in p1:
        np.testing.assert_array_equal(p1[k], p1b[k])
    assert not np.array_equal(p1["mass_scale"], p2["mass_scale"])
    # one knob's sample does not depend on which other knobs are on
    only_mass = RandomizedEnv(reacher, RandomizationConfig(mass=cfg.mass))
    only_mass.reset(seed=1)
    np.testing.assert_array_equal(only_mass.physics_params()["mass_scale"], p1["mass_scale"])
    _, _, _, _, info = w.step(np.zeros(2))
    assert info["physics"]["seed"] == 1


def test_wrapper_state_round_trip_with_noise_and_latency(reacher: envs.MujocoEnv) -> None:
    w = RandomizedEnv(reacher, RandomizationConfig(**load_group("randomization", "medium")))
    w.reset(seed=4)
    for a in ACTS[:3]:
        w.step(a)
    s = w.get_state()
    a_run = [w.step(a)[0]["state"] for a in ACTS[3:]]
    w.set_state(s)
    b_run = [w.step(a)[0]["state"] for a in ACTS[3:]]
    np.testing.assert_array_equal(np.array(a_run), np.array(b_run))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="mass"):
        RandomizationConfig(mass=-0.1)
    with pytest.raises(ValueError, match="relative"):
        RandomizationConfig(friction=1.5)
    with pytest.raises(ValueError, match="latency"):
        RandomizationConfig(latency=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown randomization knobs"):
        RandomizationConfig.from_dict({"gravity": 0.1})
    for preset in ("nominal", "light", "medium", "strong"):
        RandomizationConfig.from_dict(load_group("randomization", preset))


def test_arm_env_servo_gain_and_encoders() -> None:
    """Position-servo gain scaling on an arm env, if the arm envs are registered."""
    if "panda-reach" not in envs.available():
        pytest.skip("arm envs not registered")
    env = envs.make("panda-reach")
    m = env.model
    servo = m.actuator_biastype == 1
    kp, bp = m.actuator_gainprm[:, 0].copy(), m.actuator_biasprm[:, 1].copy()
    acts = np.random.default_rng(0).uniform(-1, 1, (6, env.spec.action_dim))
    ref = qpos_path(env, acts)
    w = wrap(env, gain=0.5, mass=0.3)
    path = qpos_path(w, acts)
    s = w.physics_params()["gain_scale"]
    np.testing.assert_allclose(m.actuator_gainprm[servo, 0], kp[servo] * s[servo])
    np.testing.assert_allclose(m.actuator_biasprm[servo, 1], bp[servo] * s[servo])
    assert np.abs(path - ref).max() > 1e-4
    # nominal wrapper restores the model and is bit-identical
    np.testing.assert_array_equal(qpos_path(wrap(env), acts), ref)
