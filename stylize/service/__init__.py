"""What the web app needs from stylize, without any UI: the studio (engines, this machine's defaults and budget,
the runs as streams of updates), each request checked once, the inputs it names (uploads, presets, painted
regions), links that reopen the app, the shipped assets, the files it writes and sweeps, Stop, and the compute
thread.

May import: everything else in stylize. Never the UI (`ui/`, `app.py`) or gradio: the UI calls in, never the
other way round.
"""
