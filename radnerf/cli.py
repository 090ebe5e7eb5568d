"""``radnerf <stage> key=value ...``: compose the Hydra config, call the stage.

Every stage is a plain function ``stage(cfg) -> result`` living in the library;
this module only parses the command line, composes the config, sets up
logging and turns :class:`~radnerf.errors.RadNerfError` into one line on stderr
and a non-zero exit. Heavy imports happen inside the commands, so
``radnerf --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from radnerf import __version__
from radnerf.errors import RadNerfError

log = logging.getLogger("radnerf")


def _commands() -> dict:
    """Every subcommand (a :class:`radnerf.pipeline.Stage`): the pipeline's stages, then the entry points that chain them."""
    from radnerf import pipeline

    commands = {s.name: s for s in pipeline.STAGES}
    commands["preprocess"] = pipeline.Stage(
        "preprocess",
        "radnerf.pipeline:preprocess",
        f"run {', '.join(pipeline.PREPROCESS)} in order; finished stages are skipped",
        "radnerf preprocess person=alice video=alice.mp4",
    )
    commands["train"] = pipeline.Stage(
        "train",
        "radnerf.pipeline:train",
        f"run {', '.join(pipeline.TRAINING)} in order; each resumes from its checkpoint, finished ones are skipped",
        "radnerf train person=alice [preset=cpu_tiny]",
    )
    commands["render"] = pipeline.Stage(
        "render",
        "radnerf.talk:render",
        "render a trained person (or a model package) speaking any audio to an MP4 with that audio",
        "radnerf render person=alice audio=speech.wav | radnerf render model=alice.radnerf.zip audio=speech.wav",
    )
    commands["stream"] = pipeline.Stage(
        "stream",
        "radnerf.talk.stream:stream",
        "render while the audio arrives (a file at its own pace, or audio=mic); prints latency and FPS",
        "radnerf stream person=alice audio=speech.wav [render.realtime=false] | radnerf stream model=alice.radnerf.zip audio=mic",
    )
    commands["demo"] = pipeline.Stage(
        "demo",
        "flows.demo:demo",
        "build the embedded sample clip (or take video=PATH) and run the person flow on it",
        "radnerf demo preset=cpu_tiny",
        takes="overrides",
    )
    commands["sweep"] = pipeline.Stage(
        "sweep",
        "flows.sweep:from_overrides",
        "an ablation: train and evaluate every combination of the overrides with several values, one table",
        "radnerf sweep person=alice preset=cpu_tiny model.ambient_dim=1,2,3  (the same as radnerf train -m ...)",
        takes="overrides",
    )
    return commands


STAGES = _commands()


def setup_logging(verbose: bool = False) -> None:
    """Concise logs on stderr: ``radnerf: message``; library chatter kept at warnings."""
    level = logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname).1s %(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("radnerf").setLevel(level)
    logging.getLogger("flows").setLevel(level)


class ProgressBar:
    """A long stage's progress on stderr: one line redrawn in place on a terminal, a line per 10% elsewhere."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None:
        share = done / total if total > 0 else 1.0
        if self.tty:
            bar = "#" * int(30 * share)
            end = "\n" if done >= total else ""
            self.stream.write(f"\r{stage} [{bar:<30}] {done}/{total} {message}\x1b[K{end}")
        else:
            tenth = int(10 * share)
            if self.last.get(stage) == tenth:
                return
            self.last[stage] = tenth
            self.stream.write(f"{stage}: {done}/{total} ({100 * share:.0f}%) {message}\n")
        self.stream.flush()


CONFIG_FILE_HELP = ("read the whole config from FILE (as `radnerf config` prints it; the DVC stages read params.yaml) "
                    "instead of composing conf/; key=value overrides set keys on it")


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="radnerf",
        description="RAD-NeRF audio-driven talking portraits. Each command takes Hydra overrides key=value "
        "(see `radnerf config` for every key).",
    )
    p.add_argument("--version", action="version", version=f"radnerf {__version__}")
    sub = p.add_subparsers(dest="command", metavar="<command>")
    for name, st in STAGES.items():
        sp = sub.add_parser(name, help=st.help, description=f"{st.help}.\n\nexample: {st.example}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra overrides")
        sp.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        sp.add_argument("--config", metavar="FILE", help=CONFIG_FILE_HELP)
        if name == "train":
            sp.add_argument("-m", "--multirun", action="store_true",
                            help="Hydra's multirun: overrides with several values (key=a,b, key=range(1,4)) are a "
                            "grid; each combination is trained and evaluated (radnerf sweep)")
        if name in ("train", "sweep"):
            sp.add_argument("--name", dest="sweep_name", metavar="NAME",
                            help="the sweep's name (default: its swept keys); its folder is <person>/sweeps/NAME")
            sp.add_argument("--workers", type=int, metavar="N",
                            help="train at most N variants at once (default: all of them; $RADNERF_TASK_RUNNER=dask "
                            "runs them on a Dask cluster)")
    cp = sub.add_parser("config", help="print the composed config for the given overrides and exit")
    cp.add_argument("overrides", nargs="*", metavar="key=value")
    cp.add_argument("--config", metavar="FILE", help=CONFIG_FILE_HELP)
    dp = sub.add_parser("dvc-yaml", help="write dvc.yaml (from the stage list) and params.yaml (conf/params.yaml "
                        "composed) beside conf/")
    dp.add_argument("--check", action="store_true", help="write nothing; exit 1 when either file is stale")
    wp = sub.add_parser("weights", help="list, fetch, import or verify external model files")
    wsub = wp.add_subparsers(dest="action", metavar="<action>")
    wl = wsub.add_parser("list", help="which models are present, where, and what needs them")
    wl.add_argument("overrides", nargs="*", metavar="key=value")
    # Every action takes the same key=value overrides (paths.weights picks the
    # folder), mixed in with the names, so they all use the folder the stages read.
    wf = wsub.add_parser("fetch", help="download models (needs internet)")
    wf.add_argument("names", nargs="+", metavar="name|key=value", help="model names, or 'all'")
    wi = wsub.add_parser("import", help="copy a model file obtained elsewhere into the cache and verify it")
    wi.add_argument("path")
    wi.add_argument("overrides", nargs="*", metavar="key=value")
    wi.add_argument("--name", help="registry name (inferred from the file name when possible)")
    wv = wsub.add_parser("verify", help="check the present models against their known hashes")
    wv.add_argument("names", nargs="*", metavar="name|key=value")
    return p


def _check_overrides(overrides: Sequence[str]) -> None:
    for ov in overrides:
        if "=" not in ov:
            raise RadNerfError(
                f"'{ov}' is not an override", hint="write key=value, e.g. person=alice video=clip.mp4"
            )


PACKAGE_COMMANDS = ("render", "stream")
"""Commands that render from a model package, named ``model=PATH`` (the issue's and users' word for it)."""


def package_alias(overrides: Sequence[str]) -> list[str]:
    """``model=PATH`` -> ``package=PATH`` where PATH is not an option of the ``model`` config group
    (``model=radnerf`` still picks ``conf/model/radnerf.yaml``)."""
    from radnerf.config import conf_dir

    options = {p.stem for p in (conf_dir() / "model").glob("*.yaml")}
    out = []
    for ov in overrides:
        key, _, value = ov.partition("=")
        out.append(f"package={value}" if key == "model" and value not in options else ov)
    return out


def _weights(args: argparse.Namespace) -> int:
    from radnerf import weights
    from radnerf.config import load_config

    words = list(getattr(args, "names", None) or [])
    overrides = list(getattr(args, "overrides", None) or []) + [w for w in words if "=" in w]
    names = [w for w in words if "=" not in w]
    folder = load_config(overrides).paths.weights
    if args.action in (None, "list"):
        rows = weights.status(folder)
        width = max(len(r["name"]) for r in rows)
        print(f"{'model':<{width}}  {'status':<8} {'size':>9}  path / used by / offline alternative")
        for r in rows:
            size = f"{r['size_mb']} MB" if r["size_mb"] is not None else "-"
            state = "present" if r["present"] else "missing"
            print(f"{r['name']:<{width}}  {state:<8} {size:>9}  {r['path']}")
            print(f"{'':<{width}}  {'':<8} {'':>9}  needed by {r['used_by']}; avoid with {r['offline']}")
        return 0
    if args.action == "fetch":
        if not names:
            raise RadNerfError("no model named to fetch", hint="e.g. radnerf weights fetch fan s3fd, or all")
        names = list(weights.REGISTRY) if names == ["all"] else names
        failed = 0
        for name in names:
            try:
                path = weights.fetch(name, folder)
                print(f"fetched {name} -> {path}")
            except RadNerfError as e:
                failed += 1
                print(f"radnerf: error: {e.message}", file=sys.stderr)
                if e.hint:
                    print(f"  hint: {e.hint}", file=sys.stderr)
        return 2 if failed else 0
    if args.action == "import":
        name, dest = weights.import_file(args.path, args.name, folder)
        ok = weights.verify(name, dest)
        state = "verified" if ok else "copied (no known hash to verify against)"
        print(f"imported {name} -> {dest} [{state}]")
        return 0
    if args.action == "verify":
        bad = 0
        for name in names or list(weights.REGISTRY):
            p = weights.local_path(name, folder)
            if p is None:
                print(f"{name}: missing")
                continue
            ok = weights.verify(name, p)
            bad += ok is False
            print(f"{name}: {'ok' if ok else 'MISMATCH' if ok is False else 'present (no known hash)'}  {p}")
        return 1 if bad else 0
    raise AssertionError(args.action)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    setup_logging(getattr(args, "verbose", False))
    try:
        if args.command == "weights":
            return _weights(args)
        if args.command == "dvc-yaml":
            from radnerf import pipeline

            stale = pipeline.write_dvc_files(check=args.check)
            for path in stale:
                print(f"{path} {'is stale' if args.check else 'written'}", file=sys.stderr)
            if not stale:
                print("dvc.yaml and params.yaml are up to date", file=sys.stderr)
            return 1 if args.check and stale else 0
        _check_overrides(args.overrides)
        if args.command in PACKAGE_COMMANDS:
            args.overrides = package_alias(args.overrides)
        if args.command == "sweep" or getattr(args, "multirun", False):
            if args.config:
                raise RadNerfError(f"radnerf {args.command} composes its own config", hint="drop --config")
            from flows.sweep import from_overrides

            swept = from_overrides(list(args.overrides), name=args.sweep_name, workers=args.workers)
            print(swept.summary())
            return swept.exit_code
        if getattr(args, "sweep_name", None) or getattr(args, "workers", None):
            raise RadNerfError("--name and --workers are for a sweep", hint="add -m: radnerf train -m key=a,b ...")
        if args.command == "train":
            from radnerf.experiments.sweep import split_multirun

            try:
                grid = split_multirun(args.overrides)[1]
            except RadNerfError:  # unreadable: composing the config says why
                grid = []
            if grid:
                raise RadNerfError(f"'{grid[0]}' gives several values",
                                   hint="add -m to train and compare each (radnerf train -m ...); "
                                   "write key=[a,b] for a list")
        from radnerf import pipeline
        from radnerf.config import load_config

        stage = STAGES.get(args.command)
        if stage is not None and stage.takes == "overrides":
            if args.config:
                raise RadNerfError(f"radnerf {args.command} composes its own config", hint="drop --config")
            result = pipeline.resolve(stage.target)(list(args.overrides))
        else:
            if args.config:
                from radnerf.config import load_config_file

                cfg = load_config_file(args.config, args.overrides)
            else:
                cfg = load_config(args.overrides)
            if stage is None:  # `radnerf config`
                from omegaconf import OmegaConf

                print(OmegaConf.to_yaml(OmegaConf.structured(cfg)), end="")
                return 0
            from radnerf.stage_io import progress_to

            with progress_to(ProgressBar()):
                if args.command in pipeline.BY_NAME:
                    print(pipeline.run_stage(pipeline.BY_NAME[args.command], cfg).summary())
                    return 0
                result = pipeline.resolve(stage.target)(cfg)
        summary = getattr(result, "summary", None)
        if callable(summary):
            print(summary())
        return 0
    except RadNerfError as e:
        print(f"radnerf {args.command}: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"radnerf {args.command}: interrupted; finished stages are kept, the interrupted one left nothing behind",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
