"""Video decoding with PyAV at a requested frame rate (see :mod:`zeroground.video.decode`)."""

from zeroground.video.decode import DecodedVideo, VideoError, decode_video, iter_video_frames, probe_duration, sample_times

__all__ = ["DecodedVideo", "VideoError", "decode_video", "iter_video_frames", "probe_duration", "sample_times"]
