"""ffmpeg-level I/O: probe, decode frames at a fixed rate, audio at 16 kHz, WAV."""

from radnerf.media.decode import align_audio, extract_frames, load_audio, read_wav, write_wav
from radnerf.media.ffmpeg import ffmpeg_exe, ffmpeg_version, run_ffmpeg
from radnerf.media.probe import AudioStreamInfo, MediaInfo, VideoStreamInfo, probe

__all__ = [
    "AudioStreamInfo",
    "MediaInfo",
    "VideoStreamInfo",
    "align_audio",
    "extract_frames",
    "ffmpeg_exe",
    "ffmpeg_version",
    "load_audio",
    "probe",
    "read_wav",
    "run_ffmpeg",
    "write_wav",
]
