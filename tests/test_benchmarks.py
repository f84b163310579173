"""The benchmark scripts' own logic on a CPU: FLOPs counted, the CPU's peak reckoned, bad options refused, and the
GPU steps skipping cleanly (with a reason) where there is no CUDA. No timing is judged here."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from tests.test_apply import _write_source

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the path taken without CUDA")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


throughput, gpu_check = _load("throughput"), _load("gpu_check")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRICKS_CACHE", str(root / "cache"))
        yield str(_write_source(root / "source", 4, 10))


def test_flops_of_a_training_image_of_doc_001s_baseline_are_counted_as_the_layers_add_up():
    # forward: 2 x (in x 3 x 3 x out x map) for the convs 3-32 (32x32), 32-64 (16x16), 64-64 (8x8), and 2 x in x out
    # for the dense 1024-64, 64-10; backward twice that (input and weight gradients), less the first conv's input
    forward = 2 * (3 * 9 * 32 * 32 * 32 + 32 * 9 * 64 * 16 * 16 + 64 * 9 * 64 * 8 * 8 + 1024 * 64 + 64 * 10)
    first_conv_input_grad = 2 * 3 * 9 * 32 * 32 * 32
    expected = 3 * forward - first_conv_input_grad
    assert throughput.train_flops_per_image(throughput.baseline_recipe()) == expected == 46_403_328


def test_the_cpu_peak_is_cores_times_clock_times_the_fma_width(tmp_path):
    block = "processor\t: {i}\nphysical id\t: 0\ncore id\t: {i}\ncpu MHz\t\t: 2245.780\nflags\t\t: fpu avx fma avx2\n\n"
    info = tmp_path / "cpuinfo"
    info.write_text("".join(block.format(i=i) for i in range(2)))
    peak, note = throughput.cpu_peak(str(info))
    assert peak == pytest.approx(2 * 2245.78e6 * 32) and "2 cores" in note and "AVX2" in note
    info.write_text(info.read_text().replace(" avx fma avx2", " avx512f avx2 fma"))
    assert throughput.cpu_peak(str(info))[0] == pytest.approx(2 * 2245.78e6 * 64)


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--family-steps", "0"], ["--gpu-workers", "4,x"],
                                  ["--gpu-workers", "0"], ["--arms", "nope"]])
def test_the_benchmark_refuses_bad_options_with_exit_2(argv, source, capsys):
    with pytest.raises(SystemExit) as e:
        throughput.parse_args(["--data", source, *argv])
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


@NO_CUDA
def test_the_gpu_arm_says_it_is_skipped_without_cuda_and_still_prints_its_json(source, capsys):
    assert throughput.main(["--gpu", "--data", source, "--steps", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "--gpu: skipped: no CUDA device" in out[0]
    last = json.loads(out[-1])
    assert last["gpu"] is None and last["gpu_workers"] == {} and "no CUDA" in last["gpu_skipped"]


@NO_CUDA
def test_gpu_checks_resnet9_step_skips_without_cuda_and_runs_a_cut_down_path_with_steps(source, capsys):
    assert gpu_check.resnet9_step(source, None)["skipped"] == "no CUDA device"
    r = gpu_check.resnet9_step(source, 1)
    assert r["device"].startswith("cpu") and r["met"] is None and 0.0 <= r["acc"] <= 1.0 and r["wall_s"] > 0
    assert "CPU path check only" in capsys.readouterr().out


def test_figures_writes_each_quoted_commands_time_with_date_and_machine_between_its_markers(tmp_path, monkeypatch):
    """The docs' timings went stale because they were typed by hand; `nox -s figures` writes them."""
    figures = _load("figures")
    cmds = figures.commands()
    assert [c.key for c in cmds] == ["list", "bnfreeze", "compare", "example", "tests", "smoke"]
    readme = (ROOT / "README.md").read_text()
    for c in cmds[:3] + cmds[4:]:
        assert c.shown in readme, c.shown  # the commands the README quotes, as it quotes them
    seen = []
    monkeypatch.setattr(figures.subprocess, "run", lambda argv, **kw: seen.append(argv) or
                        figures.subprocess.CompletedProcess(argv, 0))
    assert figures.run_command(cmds[5], tmp_path / "runs.sqlite").rc == 0  # the smoke report: beside its store
    assert seen[0][-2:] == ["--report-dir", str(tmp_path)] and not any("{tmp}" in a for a in seen[0])
    assert "learn.fit(" in cmds[3].argv[-1]  # the README's own Python block
    fake = {c.key: (3.0 + i, 0) for i, c in enumerate(cmds)}
    stores = []

    def run(cmd, store):
        stores.append(store)
        return figures.Timing(cmd, *fake[cmd.key])

    timings = figures.measure(cmds, run=run)
    assert len(set(stores)) == len(cmds)  # each from its own empty store
    text = figures.block(timings, "2026-12-07", "a test CPU, 2 cores, no GPU", ("1.0", "2.0"), "tiny")
    assert text.startswith("Measured 2026-12-07 by `nox -s figures` on a test CPU, 2 cores, no GPU")
    for c in cmds:
        shown = f"`{c.shown}`" if c.key != "example" else c.shown  # commands as code, the example in words
        assert f"| {shown} | {fake[c.key][0]:.1f} s | 0 |" in text
    doc = tmp_path / "performance.md"
    doc.write_text(f"# P\n\n{figures.START}\nold\n{figures.END}\n\nkept\n")
    from claims.report.readme import replace_block

    replace_block(doc, figures.START, figures.END, text)
    assert "old" not in doc.read_text() and doc.read_text().endswith("\n\nkept\n")
    assert figures.START in (ROOT / "docs" / "performance.md").read_text()
    assert "benchmarks/figures.py" in (ROOT / "noxfile.py").read_text()  # nox -s figures
    assert figures.main(["--only", "nonsense"]) == 2


def test_figures_says_how_much_cpu_niced_background_work_took_while_it_measured(tmp_path):
    """The load average counts the campaign at nice 19 like any other load; the line says what it actually took."""
    figures = _load("figures")
    proc = tmp_path / "proc"

    def stat(pid: int, name: str, utime: int, stime: int, nice: int) -> None:
        (proc / str(pid)).mkdir(parents=True, exist_ok=True)
        rest = ["R", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", str(utime), str(stime), "0", "0", "39",
                str(nice), "1"]
        (proc / str(pid) / "stat").write_text(f"{pid} ({name}) " + " ".join(rest) + "\n")

    (proc / "self").mkdir(parents=True)
    (proc / "self" / "stat").write_text("1 (x) R\n")
    tick = os.sysconf("SC_CLK_TCK")
    stat(10, "python) trainer", 10 * tick, 0, 19)  # a ')' in the name: parsed from the last one
    stat(11, "pytest", 50 * tick, 0, 0)  # the measured command itself: not background
    before = figures.niced_cpu_s(proc)
    assert before == {10: 10.0}
    stat(10, "python) trainer", 25 * tick, 5 * tick, 19)
    stat(12, "new worker", 3 * tick, 0, 10)
    after = figures.niced_cpu_s(proc)
    line = figures.background_share(before, after, 100.0)
    assert line == f"; background work at nice ≥ 10 took 23 CPU-s of the {os.cpu_count()} cores' " \
                   f"{100 * os.cpu_count():,}"
    assert figures.niced_cpu_s(tmp_path / "nothing") is None and figures.background_share(None, after, 1.0) == ""
    text = figures.block([], "2026-12-07", "cpu", ("2.0", "2.1"), "tiny", line)
    assert "load average 2.0 before, 2.1 after; background work at nice ≥ 10 took 23 CPU-s" in text


def test_heap_benchmark_prints_each_arms_medians_and_ratios_to_glibcs_defaults(tmp_path, monkeypatch):
    heap = _load("heap")
    assert heap.parse_spec("he2016/naive:5") == ("he2016/naive", 5) and heap.parse_spec("x") == ("x", 1)
    for bad in ("he2016/naive:five", "he2016/naive:0"):
        with pytest.raises(SystemExit, match="heap benchmark"):
            heap.parse_spec(bad)
    walls = {"glibc": [10.0, 12.0], "trim": [11.0, 11.0], "mmap": [20.0, 22.0]}
    peaks = {"glibc": [4000.0, 2000.0], "trim": [1000.0, 1000.0], "mmap": [900.0, 900.0]}
    order = []

    def fake(arm, name, epochs):
        order.append(arm.key)
        i = order.count(arm.key) - 1
        return {"wall_s": walls[arm.key][i], "peak_mb": peaks[arm.key][i], "minflt": 100, "acc": 0.5}

    monkeypatch.setattr(heap, "run_arm", fake)
    results = heap.measure(["r:2"], rounds=2)
    assert order == ["glibc", "trim", "mmap", "mmap", "trim", "glibc"]  # turns, reversed every other round
    rows = heap.table(results)
    trim = "| r:2 | HeapTrim every 100 batches (what `run` does) | 11.0 s | 1.00x | 1,000 MB | 0.33x | 100 | 0.5000 |"
    assert trim in rows
    assert "| r:2 | MALLOC_MMAP_THRESHOLD_=131072, no trim | 21.0 s | 1.91x | 900 MB | 0.30x | 100 | 0.5000 |" in rows
    assert heap.START in (ROOT / "docs" / "performance.md").read_text()
    head = heap.block(rows, 2, "2026-12-08 01:00 UTC", "a machine", (0.5, 2.25)).splitlines()[0]
    assert head.endswith("on a machine; load average 0.5 before, 2.2 after.")


def test_the_gpu_campaign_carries_fastai_and_what_the_device_lacks_and_one_command_runs_it_there():
    camp = _load("gpu_campaign")
    pins = camp.carried()
    assert {"fastai", "fastcore", "fastprogress", "plum-dispatch"} <= set(pins)
    assert not ({"torch", "torchvision", "scipy", "pandas", "matplotlib", "spacy"} & set(pins))  # there, or unused
    assert pins["fastai"].startswith("2.8.")
    cmd = camp.device_command(300)
    assert len(cmd) <= 2000 and "--target /tmp/site .gpu/whl/*.whl" in cmd  # the device tool's limit and carry
    assert "gpu_campaign.py device --out $OUT --budget 300" in cmd and cmd.endswith("tee $OUT/log.txt")
    with pytest.raises(SystemExit):
        camp.main(["device", "--out", "x", "--budget", "60"])


def test_a_gpu_campaign_step_past_its_limit_is_stopped_with_its_children(tmp_path):
    camp = _load("gpu_campaign")
    log = tmp_path / "steps.log"
    child = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
              f"time.sleep(60)']); open({str(child)!r}, 'w').write(str(p.pid)); print('started', flush=True); "
              "time.sleep(60)")
    assert camp._step("slow", [sys.executable, "-c", script], 2, log) is None
    assert "started" in log.read_text()
    pid = int(child.read_text())
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(50):  # killed: gone, or a zombie until whoever adopted it reaps it
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the step's child process outlived the step")
    assert camp._step("quick", [sys.executable, "-c", "print('ok')"], 30, log) == 0
