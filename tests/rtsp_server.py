"""A camera for the tests: GStreamer's RTSP server playing an H.264 mp4 at its own pace on 127.0.0.1.

Runs under the SYSTEM python3 (Debian's python3-gi with gir1.2-gst-rtsp-server-1.0), not the project's venv:

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --mount /cam video.mp4

Prints ``ready`` once it listens. Each client gets the file from its start; at its end the client sees the stream
end, as with a camera that hangs up.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="/cam")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{args.video}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'
    )
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
