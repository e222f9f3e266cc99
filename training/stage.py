"""One way to run a stage, for the pipeline and the ablation alike: `run_stage`.

A stage that finished earlier (its `DONE.json` exists) is skipped and its outputs returned; one
cut short restarts from its newest checkpoint (the stage functions ask the run for it).

By default each stage runs in a child process, `python -m training.stage RUN_DIR STAGE FUNCTION
--inputs JSON`, which reads the run's `config.json`, runs the stage, writes `DONE.json` and
exits. Memory is the reason: PyTorch and glibc keep what a trainer allocated long after the
trainer is gone, so in one process the default run grew to 7.8 GB resident although no stage
needs more than a few GB; a process that exits gives everything back. The parent process
never imports torch; it only draws the progress bar, which it reads from the child's
`progress.json`.

Under `accelerate launch` (several ranks) stages run in the ranks' own processes instead: the
ranks' process group is set up once per process, and every rank must take part in a trainer.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from training.layout import RunDirectory

# How often the parent looks at a child's progress file.
POLL_S = 0.5
# The parent's pid, handed to the child so it can tell when it was orphaned.
PARENT_ENV = "BALANCEDBIO_STAGE_PARENT"
# The child's exit code when the model cannot be loaded (the message is already printed).
MODEL_UNAVAILABLE = 3


class StageFailed(RuntimeError):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def progress_display(enabled: bool = True):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled)


class StageRunner:
    """Runs the stages of one run directory, each once, in a child process or in this one."""

    def __init__(self, run: RunDirectory, subprocesses: bool = True, progress=None):
        self.run, self.progress = run, progress
        # Several ranks share one process group that lives in their own processes.
        self.subprocesses = subprocesses and world_size() == 1
        self._state = None
        if world_size() > 1:
            from accelerate import PartialState

            self._state = PartialState()

    @property
    def is_main(self) -> bool:
        return self._state.is_main_process if self._state is not None else is_main_process()

    def run_stage(self, name: str, function: str | None = None, everyone: bool = False, label: str | None = None,
                  **inputs) -> dict:
        """Run stage `name` with `STAGE_FUNCTIONS[function or name]` and `inputs` (strings, flags);
        returns its outputs. `everyone`: under accelerate launch every rank takes part (trainers);
        otherwise the main rank runs it while the others wait."""
        task = self._task(label or name)
        done = self.run.done(name)
        if done is not None:
            self._update(task, description=f"{label or name} (done earlier)", total=1, completed=1)
            return done
        started = time.perf_counter()
        if self.subprocesses:
            self._in_child(name, function or name, inputs, task)
        elif everyone or self.is_main:
            self._in_process(name, function or name, inputs, task)
        if self.is_main:
            outputs = self._outputs(name)
            outputs["wall_time_s"] = round(time.perf_counter() - started, 1)
            self.run.mark_done(name, outputs)
        if self._state is not None:  # the other ranks read DONE.json only once the main rank wrote it
            self._state.wait_for_everyone()
        self._update(task, total=1, completed=1)
        return self._outputs(name)

    def _outputs(self, name: str) -> dict:
        outputs = self.run.done(name)
        if outputs is None:
            raise RuntimeError(f"stage {name} ended without writing {self.run.done_file(name)}; see its messages above")
        return outputs

    # ---- the two ways ------------------------------------------------------------------------
    def _in_process(self, name: str, function: str, inputs: dict, task) -> None:
        from training.stages import STAGE_FUNCTIONS

        config = load_config(self.run)

        def report(completed, total):
            self._update(task, completed=completed, total=total)

        outputs = STAGE_FUNCTIONS[function](config, self.run, report, **inputs)
        if self.is_main:
            self.run.mark_done(name, outputs)
        gc.collect()  # drop the trainer before the next stage builds its own

    def _in_child(self, name: str, function: str, inputs: dict, task) -> None:
        cmd = [sys.executable, "-m", "training.stage", str(self.run.path), name, function, "--inputs", json.dumps(inputs)]
        progress_file = self.run.progress_file(name)
        progress_file.unlink(missing_ok=True)
        child = subprocess.Popen(cmd, env={**os.environ, PARENT_ENV: str(os.getpid())})
        try:
            while child.poll() is None:
                time.sleep(POLL_S)
                seen = _read_progress(progress_file)
                if seen:
                    self._update(task, **seen)
        except BaseException:
            child.kill()
            child.wait()
            raise
        if child.returncode == MODEL_UNAVAILABLE:
            raise StageFailed(f"stage {name}: the model could not be loaded (see above)", 2)
        if child.returncode != 0:
            raise StageFailed(f"stage {name} failed (exit code {child.returncode}); its messages are above. "
                              f"Fix the cause and continue with --resume {self.run.path}", 1)

    # ---- progress bar ------------------------------------------------------------------------
    def _task(self, label: str):
        if self.progress is None:
            return None
        return self.progress.add_task(label, total=None)

    def _update(self, task, **fields) -> None:
        if self.progress is not None and task is not None:
            self.progress.update(task, **fields)


def _read_progress(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return None


def _die_with_parent() -> None:
    """A killed parent takes its stage with it (Linux PR_SET_PDEATHSIG), so no orphan keeps training.
    Set by the child itself (a preexec_fn is unsafe in the parent, whose progress bar runs a thread);
    a parent that died before this line is caught by comparing the parent's pid."""
    parent = os.environ.get(PARENT_ENV)
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if parent and os.getppid() != int(parent):
        sys.exit("training.stage: the run that started this stage is gone; continue it with --resume")


def load_config(run: RunDirectory):
    from training.config import RunConfig

    return RunConfig(**json.loads(run.config.read_text()))


def file_progress(run: RunDirectory, name: str):
    """The child's progress reporter: the parent polls this file for its bar."""
    path = run.progress_file(name)

    def report(completed: int, total: int | None) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"completed": completed, "total": total}))
        tmp.replace(path)

    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.stage",
                                     description="Run one stage of a run directory (training.run starts these).")
    parser.add_argument("run_dir", help="the run directory (runs/NAME), holding config.json")
    parser.add_argument("stage", help="the stage's name, i.e. its folder in the run directory")
    parser.add_argument("function", help="which stage function: data, base, sft, reward_model, grpo, eval, export")
    parser.add_argument("--inputs", default="{}", help="the stage function's inputs as a JSON object")
    args = parser.parse_args(argv)
    _die_with_parent()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run = RunDirectory(Path(args.run_dir))
    if not run.config.is_file():
        parser.error(f"{run.config} does not exist; start runs with python -m training.run")
    import datasets

    from training.stages import STAGE_FUNCTIONS

    if args.function not in STAGE_FUNCTIONS:
        parser.error(f"unknown stage function {args.function!r}; choose from {', '.join(STAGE_FUNCTIONS)}")
    datasets.disable_progress_bars()
    from training.models import ModelUnavailableError

    try:
        outputs = STAGE_FUNCTIONS[args.function](load_config(run), run, file_progress(run, args.stage),
                                                 **json.loads(args.inputs))
    except ModelUnavailableError as e:  # a usage problem, said in one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return MODEL_UNAVAILABLE
    # This process's peak resident memory: the run's peak is its largest stage's plus the parent's.
    outputs["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    run.mark_done(args.stage, outputs)
    return 0


def peak_memory(run: RunDirectory) -> dict:
    """Peak resident memory of the parent and of each stage's process (MB), as the run recorded them."""
    stages = {name: out["peak_rss_mb"] for name, out in run.finished_stages().items() if "peak_rss_mb" in out}
    largest = max(stages.items(), key=lambda kv: kv[1], default=(None, 0))
    parent = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"parent_mb": parent, "stages_mb": stages, "largest_stage": largest[0],
            "parent_plus_largest_stage_mb": parent + largest[1]}


if __name__ == "__main__":
    sys.exit(main())
