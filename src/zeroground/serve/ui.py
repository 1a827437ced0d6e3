"""The Gradio UI: a *Search* tab across the library and a *One video* tab.

Results are cards (thumbnail at the moment's start, video id, span); clicking a card plays
that video from the moment's start in the player above the cards (``js_on_load`` wires the
clicks once; the cards are re-rendered on every search).
"""

from __future__ import annotations

import html

import numpy as np

from zeroground.errors import ZerogroundError
from zeroground.serve.state import ServeState

# Clicks anywhere in the component: a card sets the player's source and seeks to its start.
PLAYER_JS = """
element.addEventListener('click', function (ev) {
  const card = ev.target.closest('.zg-hit');
  if (!card) return;
  const player = element.querySelector('video.zg-player');
  const start = parseFloat(card.dataset.start);
  const seek = function () { player.currentTime = start; player.play().catch(function () {}); };
  element.querySelectorAll('.zg-hit').forEach(function (c) { c.classList.remove('zg-active'); });
  card.classList.add('zg-active');
  player.style.display = 'block';
  if (player.dataset.src !== card.dataset.src) {
    player.dataset.src = card.dataset.src;
    player.src = card.dataset.src;
    player.addEventListener('loadedmetadata', seek, { once: true });
    player.load();
  } else { seek(); }
});
"""

CSS = """
.zg-hits { display: flex; flex-wrap: wrap; gap: 8px; }
.zg-hit { cursor: pointer; border: 2px solid #ddd; border-radius: 6px; padding: 4px; width: 172px; font-size: 12px; }
.zg-hit.zg-active { border-color: #f97316; }
.zg-hit img { width: 160px; display: block; }
video.zg-player { width: 100%; max-width: 480px; max-height: 360px; display: none; margin-bottom: 8px; }
"""


def hits_html(hits: list[dict]) -> str:
    """Player + one card per hit (``video``, ``start``, ``end``, ``score``, optional ``label``)."""
    if not hits:
        return "<p>No results.</p>"
    cards = []
    for i, h in enumerate(hits, 1):
        vid = html.escape(h["video"])
        cards.append(
            f'<div class="zg-hit" data-src="/media/{vid}" data-start="{h["start"]:.3f}" data-end="{h["end"]:.3f}">'
            f'<img src="/thumb/{vid}?t={h["start"]:.2f}" alt="{vid} at {h["start"]:.1f} s">'
            f'<b>{i}. {html.escape(h.get("label", h["video"]))}</b><br>'
            f'{h["start"]:.1f}-{h["end"]:.1f} s · score {h["score"]:.3f}</div>')
    return '<video class="zg-player" controls muted playsinline></video><div class="zg-hits">' + "".join(cards) + "</div>"


def similarity_figure(sim: np.ndarray, duration: float, spans: list, query: str):
    """Frame–sentence similarity over time with the top-k spans as a timeline below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, tl) = plt.subplots(2, 1, figsize=(8, 3.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    t = (np.arange(len(sim)) + 0.5) * duration / max(1, len(sim))
    ax.plot(t, sim, color="tab:blue")
    ax.set_ylabel("cosine sim.")
    ax.set_title(f"\u201c{query[:80]}\u201d", fontsize=9)
    for rank, s in enumerate(spans):
        ax.axvspan(s.start, s.end, color="tab:orange", alpha=0.25 if rank else 0.45)
        tl.barh(0, s.end - s.start, left=s.start, height=0.6, color="tab:orange", alpha=1.0 - 0.12 * rank)
        tl.text((s.start + s.end) / 2, 0, str(rank + 1), ha="center", va="center", fontsize=8)
    tl.set_yticks([])
    tl.set_xlim(0, duration)
    tl.set_xlabel("seconds")
    fig.tight_layout()
    return fig


def build_ui(state: ServeState):
    import gradio as gr

    video_ids = [v.id for v in state.library.videos if v.file is not None]

    def do_search(query: str, k: float):
        try:
            res = state.searcher.search(query or "", int(k))
        except ZerogroundError as err:
            return hits_html([]), f"**Error:** {err}"
        hits = [{"video": h.video, "start": h.start, "end": h.end, "score": h.score} for h in res.hits]
        note = f"{len(hits)} moments from {res.candidates} candidate videos of {len(state.library)}."
        return hits_html(hits), note + (f" *Note: {res.note}.*" if res.note else "")

    def do_upload(file):
        if file is None:
            return gr.update(), ""
        path = file if isinstance(file, str) else getattr(file, "name", None)
        try:
            with open(path, "rb") as fh:
                vid, dur = state.add_upload(str(path), fh)
        except (ZerogroundError, OSError) as err:
            return gr.update(), f"**Upload refused:** {err}"
        choices = video_ids + [vid]
        return gr.update(choices=choices, value=vid), f"Uploaded and encoded: {vid} ({dur:.1f} s)."

    def do_ground(video_id: str, query: str, top_k: float):
        if not video_id:
            return None, hits_html([]), "**Error:** pick or upload a video first"
        try:
            spans, sim, duration, note = state.ground(video_id, query or "", int(top_k))
        except ZerogroundError as err:
            return None, hits_html([]), f"**Error:** {err}"
        fig = similarity_figure(sim, duration, spans, query)
        hits = [{"video": video_id, "start": s.start, "end": s.end, "score": s.score, "label": f"{s.source}"}
                for s in spans]
        return fig, hits_html(hits), f"{len(spans)} spans." + (f" *Note: {note}.*" if note else "")

    with gr.Blocks(title="zeroground") as ui:
        gr.Markdown(f"## zeroground · {len(state.library)} videos · "
                    f"{'model ' + str(state.searcher.grounder._trained.path.name) if state.searcher.trained else 'training-free'}")
        with gr.Tab("Search"):
            with gr.Row():
                query = gr.Textbox(label="Describe the moment", placeholder="a person opens the door",
                                   elem_id="zg-query", scale=4)
                k = gr.Slider(1, 50, value=10, step=1, label="results", scale=1)
            go = gr.Button("Search", variant="primary", elem_id="zg-search")
            status = gr.Markdown(elem_id="zg-status")
            results = gr.HTML(hits_html([]), js_on_load=PLAYER_JS, elem_id="zg-results")
            go.click(do_search, [query, k], [results, status])
            query.submit(do_search, [query, k], [results, status])
        with gr.Tab("One video"):
            with gr.Row():
                pick = gr.Dropdown(video_ids, label="Library video", elem_id="zg-pick")
                upload = gr.File(label="…or upload a video", file_types=[".mp4", ".mkv", ".webm", ".mov", ".avi"])
            with gr.Row():
                vquery = gr.Textbox(label="Query (ask as many as you like; the video is encoded once)", scale=4,
                                    elem_id="zg-vquery")
                top_k = gr.Slider(1, 10, value=5, step=1, label="top-k", scale=1)
            vgo = gr.Button("Ground", variant="primary", elem_id="zg-ground")
            vstatus = gr.Markdown()
            plot = gr.Plot(label="similarity and top-k spans")
            spans = gr.HTML(hits_html([]), js_on_load=PLAYER_JS)
            upload.upload(do_upload, [upload], [pick, vstatus])
            vgo.click(do_ground, [pick, vquery, top_k], [plot, spans, vstatus])
            vquery.submit(do_ground, [pick, vquery, top_k], [plot, spans, vstatus])
    return ui
