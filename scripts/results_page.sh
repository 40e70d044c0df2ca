#!/usr/bin/env bash
# Sim-to-real results page for one policy: the randomization presets (nominal, light, medium,
# strong) plus single-knob sweeps, merged into a table, per-knob plots and one video.
#
#   scripts/results_page.sh OUT_DIR PRESET_EPISODES KNOB_EPISODES STEPS POLICY_ARGS...
#   scripts/results_page.sh docs/results/planar_reach_tdmpc2_1m 20 8 100 \
#       checkpoint=checkpoints/planar_reach_tdmpc2_1m.pt threads=1
#
# Sweeps run as Hydra multiruns on the joblib launcher (one job per core); the merge writes
# merged_{episodes,summary}.{csv,json,md}, presets.png and knob_<name>.png into OUT_DIR.
set -euo pipefail
out="$1" episodes="$2" knob_episodes="$3" steps="$4"
shift 4
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wm="$root/scripts/wm"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export MUJOCO_GL="${MUJOCO_GL:-egl}"
common=("$@" "steps=$steps" progress=false hydra/launcher=joblib)
"$wm" eval -m "${common[@]}" "episodes=$episodes" randomization=nominal,light,medium,strong \
  'video.episodes=[0]' "hydra.sweep.dir=$tmp/presets"
# the knobs a joint-state policy can feel (camera and lighting knobs act on pixels only)
for knob in "mass=0.25,0.5,0.75" "gain=0.15,0.3,0.5" "latency=1,2,4" "obs_noise=0.01,0.03,0.1"; do
  "$wm" eval -m "${common[@]}" "episodes=$knob_episodes" "randomization.$knob" \
    "hydra.sweep.dir=$tmp/knob_${knob%%=*}"
done
mkdir -p "$out"
"$wm" eval-merge "$tmp" --out "$out"
# the medium preset's first episode (job 2 of the presets sweep: nominal, light, medium, strong)
cp "$(find "$tmp/presets/2" -name '*.mp4' | sort | head -n 1)" "$out/medium-episode000.mp4"
echo "results page data in $out"
