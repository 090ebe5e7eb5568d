"""The evaluation report: what a person looks at beside the numbers.

``eval/``::

    metrics.json        the numbers, {split: {variant: {metric: value}}}: DVC's metrics (radnerf.eval.evaluate)
    records.json        every metric: name, value, unit, split, variant, backend (or why it is unavailable)
    psnr_frames.csv     PSNR of every frame and variant (frame, variant, psnr, split): DVC's plot
    side_by_side.mp4    ground truth | render | error (x4) over the whole clip, with the clip's audio
    mouth.png           mouth opening over time, real and rendered, with the audio's loudness under it
    psnr.png            PSNR of every frame over time, val frames shaded
    report.md           the tables and the plots, one page
    report.html         the same page for a browser (images inline)
    val/<variant>/<img_id>.png   the val renders, lossless (radnerf.eval.evaluate writes them)
"""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

import numpy as np

from radnerf.media.decode import write_wav

VARIANTS = ("radnerf", "no audio", "still frame", "real video")
VAL_COLUMNS = (("psnr", "PSNR (dB) ↑"), ("psnr_face", "face PSNR ↑"), ("psnr_lips", "lips PSNR ↑"),
               ("lpips", "LPIPS ↓"), ("lmd", "LMD (px) ↓"))
SYNC_COLUMNS = (("mouth_audio_corr_at_0", "mouth-audio corr. at 0 ↑"), ("mouth_audio_corr", "best corr."),
                ("mouth_audio_offset", "at offset (frames)"),
                ("mouth_opening_std", "mouth motion (std)"), ("lse_d", "LSE-D ↓"), ("lse_c", "LSE-C ↑"))


def error_map(render: np.ndarray, truth: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """``[H, W, 3]`` uint8: the per-pixel colour error, ``gain`` x brighter, as a grey image."""
    diff = np.abs(render.astype(np.float32) - truth.astype(np.float32)).mean(axis=-1, keepdims=True)
    return np.repeat(np.clip(diff * gain, 0, 255), 3, axis=-1).astype(np.uint8)


def tables(ev) -> tuple[list[list[str]], list[list[str]]]:
    """The val table and the lip-sync table as rows of cells (first row: the header)."""

    def cell(name: str, variant: str, split: str) -> str:
        for m in ev.metrics:
            if (m.name, m.variant, m.split) == (name, variant, split):
                if m.value is None:
                    return "n/a"
                return f"{m.value:.0f}" if m.unit == "frames" else f"{m.value:.3f}" if abs(m.value) < 10 else \
                    f"{m.value:.2f}"
        return ""

    val = [["variant (val frames)", *[t for _, t in VAL_COLUMNS]]]
    for variant in VARIANTS[:-1]:
        if any(m.variant == variant and m.split == "val" for m in ev.metrics):
            val.append([variant, *[cell(n, variant, "val") for n, _ in VAL_COLUMNS]])
    sync = [["video", *[t for _, t in SYNC_COLUMNS]]]
    for split in dict.fromkeys(m.split for m in ev.metrics if m.split != "val"):
        for variant in VARIANTS:
            if any(m.variant == variant and m.split == split for m in ev.metrics):
                what = "own audio" if split == "clip" else split.split(":", 1)[1]
                sync.append([f"{variant}, {what}", *[cell(n, variant, split) for n, _ in SYNC_COLUMNS]])
    return val, sync


def unavailable(ev) -> list[str]:
    """One line per metric that has no value, with why (deduplicated)."""
    return list(dict.fromkeys(f"{m.name}: {m.unavailable}" for m in ev.metrics
                              if m.value is None and m.unavailable and m.name in ("lpips", "lse_d")))


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def plots(out: Path, ev) -> None:
    """``mouth.png`` and ``psnr.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(ev.real)) / 25.0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for name in ("real video", "radnerf", "no audio"):
        if name in ev.openings:
            top.plot(t, ev.openings[name], label=name, lw=1.5 if name != "no audio" else 1.0)
    top.set_ylabel("mouth opening\n(inner lip gap / eye distance)")
    top.legend(loc="upper right")
    top.set_title("Mouth opening over the clip, the person's own audio")
    bottom.plot(t, ev.openness, color="gray")
    bottom.set_ylabel("loudness")
    bottom.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out / "mouth.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3))
    for name, values in ev.per_frame_psnr.items():
        ax.plot(t, values, label=name, lw=1.2)
    if len(ev.val_index):
        ax.axvspan(t[ev.val_index.min()], t[ev.val_index.max()], color="orange", alpha=0.15, label="val frames")
    ax.set_ylabel("PSNR (dB)")
    ax.set_xlabel("time (s)")
    ax.legend(loc="lower left")
    ax.set_title("PSNR of each frame (training frames are seen in training; val frames are not)")
    fig.tight_layout()
    fig.savefig(out / "psnr.png", dpi=100)
    plt.close(fig)


def side_by_side(out: Path, ev) -> None:
    """``side_by_side.mp4``: ground truth | render | error map, with the clip's audio."""
    from radnerf.media.encode import VideoWriter

    render = ev.videos["radnerf"]
    h, w = render[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        write_wav(wav, ev.audio, 16000)
        with VideoWriter(out / "side_by_side.mp4", 25, 3 * w, h, audio=wav) as video:
            for real, frame in zip(ev.real, render):
                video.write(np.concatenate([real, frame, error_map(frame, real)], axis=1))


def write_report(out: Path, person: str, ev) -> None:
    """Everything in ``out`` but the numbers :mod:`radnerf.eval.evaluate` writes (see the module's docstring)."""
    plots(out, ev)
    side_by_side(out, ev)
    val, sync = tables(ev)
    missing = unavailable(ev)
    intro = (f"Self-driven: every frame of {person}'s clip rendered with its own audio, tracked pose and eyes; "
             f"the image metrics are over the {len(ev.val_index)} held-out val frames. Lip sync is over whole "
             "videos: the real clip with its audio is the reference a render should approach.")
    md = [f"# Evaluation of {person}", "", intro, "", "## Held-out frames", "", markdown_table(val), "",
          "## Lip sync", "", markdown_table(sync), ""]
    if missing:
        md += ["Not computed here:", "", *[f"- {line}" for line in missing], ""]
    md += ["## Mouth opening", "", "![mouth opening](mouth.png)", "", "## PSNR over time", "", "![psnr](psnr.png)",
           "", "`side_by_side.mp4`: ground truth | render | error x4, with the audio.", ""]
    (out / "report.md").write_text("\n".join(md))

    def img(name: str) -> str:
        data = base64.b64encode((out / name).read_bytes()).decode()
        return f'<img alt="{name}" src="data:image/png;base64,{data}" style="max-width:100%">'

    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}")
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>radnerf evaluation: {html.escape(person)}"
            f"</title><style>{style}</style></head><body>", f"<h1>Evaluation of {html.escape(person)}</h1>",
            f"<p>{html.escape(intro)}</p>", "<h2>Held-out frames</h2>", html_table(val), "<h2>Lip sync</h2>",
            html_table(sync)]
    if missing:
        page.append("<p>Not computed here:</p><ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in missing) + "</ul>")
    page += ["<h2>Mouth opening</h2>", img("mouth.png"), "<h2>PSNR over time</h2>", img("psnr.png"),
             "<p><a href='side_by_side.mp4'>side_by_side.mp4</a>: ground truth | render | error x4, with the audio."
             "</p></body></html>"]
    (out / "report.html").write_text("\n".join(page))
