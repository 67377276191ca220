"""The browser viewer of ``virtualbiopsy view``: trame-slicer views and effects over the Qt-free library.

``server.py`` starts one server for one study; ``app.py`` holds the page's actions (each one library
call); ``page.py`` lays the widgets out. Nothing here computes: the review rules live in
:mod:`virtualbiopsy.review`.
"""
