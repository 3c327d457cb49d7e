"""The web UI's parts beside app.py (which holds the layout and the events): the shared studio (`service`), the
public endpoints and the GPU functions (`endpoints`), the internal events (`handlers`), custom components and
controls made from the settings' descriptions (`components`), UI words (`text`) and the CSS (`style.css`)."""
