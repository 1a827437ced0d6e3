"""A searchable video library: index many videos once, find moments across all of them.

``Library`` (``index.py``) keeps a manifest, the per-video CLIP features (HDF5, written by
``zeroground.features.extract``), one flat frame-vector matrix for search, and a FAISS file
when the library is large. ``search`` (``search.py``) answers a sentence in two stages.
"""

from zeroground.library.index import Library, LibraryError, index_videos
from zeroground.library.search import LOCALIZERS, SearchHit, Searcher

__all__ = ["Library", "LibraryError", "index_videos", "LOCALIZERS", "SearchHit", "Searcher"]
