"""Views: widgets, pictures and pages of the explorer's state. They read and link the state's traits and
call its operations; the state never imports them.

========== ==================================================================
view       the live leafmap map, a binding of a session (``Explorer``)
controls   the settings' controls and each region layer's own sliders
gallery    thumbnails, the results' gallery, the two years side by side
panel      the labelling panel, a binding of the loop (``LabelPanel``)
figures    static pictures of the map, the gallery and the learning curve
pages      the map as a standalone page, and headless-Chromium screenshots
styles     how results, labels and legends look (styled GeoJSON, HTML)
wms        WMS client (OWSLib) and the local MapServer for offline use
========== ==================================================================
"""
