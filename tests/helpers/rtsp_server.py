"""A stand-alone RTSP server for tests: `python rtsp_server.py PORT MOUNT [any|udp|tcp|mcast]`
serves a live test pattern (moving ball, 320x240, 30 fps, H.264) at rtsp://127.0.0.1:PORT/MOUNT
until killed, over every transport (`any`, the default), over UDP only (`udp`: it refuses RTP
over TCP, as VLC's own server does), over TCP only (`tcp`), or over multicast only (`mcast`: a
unicast client gets neither TCP nor UDP).

SPS/PPS go before each IDR access unit (h264parse), not before each of x264's slices
(rtph264pay config-interval), which would split every keyframe in two for FFmpeg."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main() -> None:
    port, mount = sys.argv[1], sys.argv[2]
    kind = sys.argv[3] if len(sys.argv) > 3 else "any"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! h264parse config-interval=-1 "
        "! rtph264pay name=pay0 pt=96 )"
    )
    factory.set_shared(True)
    if kind != "any":
        trans = GstRtsp.RTSPLowerTrans
        factory.set_protocols({"udp": trans.UDP, "tcp": trans.TCP, "mcast": trans.UDP_MCAST}[kind])
    if kind == "mcast":
        pool = GstRtspServer.RTSPAddressPool()
        pool.add_range("224.3.0.0", "224.3.0.10", 5000, 5010, 1)
        factory.set_address_pool(pool)
    server.get_mount_points().add_factory("/" + mount, factory)
    if server.attach(None) == 0:
        print("cannot attach", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
