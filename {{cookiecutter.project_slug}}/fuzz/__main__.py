"""``python -m fuzz [TARGET ...] [--seconds N]``: coverage-guided fuzzing with atheris.

One process per target (libFuzzer ends the process when it is done). Each
starts from ``fuzz/corpus/<target>/`` and adds the new inputs it finds there;
a crash is written to ``fuzz/crashes/<target>-...`` and ends the run with a
non-zero exit code. ``make fuzz`` runs every target for FUZZ_SECONDS each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "{{ cookiecutter.package_name }}"  # instrumented for coverage, with fuzz/
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"


def run_one(name: str, seconds: int, runs: int | None, grow: bool) -> None:
    """Fuzz ``name`` in this process (atheris never returns)."""
    import atheris

    with atheris.instrument_imports(include=[PACKAGE, "fuzz"]):
        from fuzz.targets import TARGETS
    target = TARGETS[name]
    CRASHES.mkdir(exist_ok=True)
    corpus = CORPUS / name
    args = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-artifact_prefix={CRASHES}/{name}-",
        "-max_len=4096",
        "-print_final_stats=1",
    ]
    if runs is not None:
        args.append(f"-runs={runs}")
    if grow:
        args.append(str(corpus))  # new interesting inputs are written here
    else:
        args += [f"-seed_inputs={','.join(str(p) for p in sorted(corpus.iterdir()))}"]
    atheris.Setup(args, target)
    atheris.Fuzz()


def target_names() -> list[str]:
    """The targets, without importing them (the child instruments that import)."""
    from {{ cookiecutter.package_name }}.sgs.protocol import PROTOCOLS

    return ["tlv", "reader", *PROTOCOLS, "inbound"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument(
        "targets", nargs="*", help="default: all (tlv, reader, each codec, inbound)"
    )
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--runs", type=int, help="stop after this many inputs instead")
    parser.add_argument(
        "--grow", action="store_true", help="add new interesting inputs to fuzz/corpus/"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.one:  # before any import of the package, so that atheris instruments it
        run_one(args.one, args.seconds, args.runs, args.grow)
        return 0
    names = target_names()
    unknown = sorted(set(args.targets) - set(names))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    failed = []
    for name in args.targets or names:
        command = [sys.executable, "-m", "fuzz", "--one", name, "--seconds", str(args.seconds)]
        if args.runs is not None:
            command += ["--runs", str(args.runs)]
        if args.grow:
            command.append("--grow")
        print(f"== fuzz {name} ({args.seconds}s)", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"crashes in: {', '.join(failed)} (inputs in {CRASHES})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
