"""The page's widgets (Vuetify 3 through trame). Layout only: every button calls a :class:`ReviewApp` method.

Element ids (``vb-...``) name what a reader sees, and are what the browser tests click.
"""

from __future__ import annotations


def build(app):
    from trame.ui.vuetify3 import VAppLayout
    from trame.widgets import html
    from trame.widgets import vuetify3 as v

    server = app.server
    with VAppLayout(server, full_height=True) as layout:
        with v.VAppBar(density="compact", color="#1d2a36"):
            v.VToolbarTitle("Virtual Biopsy review: {{ study_name }}")
            v.VChip("Research use only, not for clinical decisions", color="amber", size="small", classes="mr-4")
        with v.VNavigationDrawer(permanent=True, width=430, location="left"):
            with html.Div(classes="pa-2", style="overflow-y: auto; height: 100%;"):
                _autosave_banner(v, app)
                with v.VExpansionPanels(multiple=True, v_model=("open_panels", [0, 1, 2, 3, 4]), variant="accordion"):
                    _study_panel(v, html, app)
                    _ai_panel(v, html, app)
                    _correction_panel(v, html, app)
                    _compare_panel(v, html, app)
                    _pipeline_panel(v, html, app)
        with v.VMain(), html.Div(style="height: calc(100vh - 48px - 80px); display: flex;"):
            app.layout_manager.initialize_layout_grid(layout)
        with v.VFooter(app=True, height=80, classes="d-flex flex-column align-stretch py-1", color="#10181f"):
            with html.Div(classes="d-flex align-center", style="gap: 8px;"):
                v.VProgressLinear(id="vb-progress", model_value=("progress",), active=("busy",), height=8,
                                  color="#04a94d", style="flex: 1;")
                html.Span("{{ busy ? (progress_text || busy_action) + ' ' + progress + ' %' : '' }}",
                          id="vb-progress-text", classes="text-caption")
                v.VBtn("Cancel", id="vb-cancel", size="small", v_show=("busy",), click=app.cancel, color="red")
            html.Div("Axial <span id='vb-slice-axial'>{{ slice_positions.Red }}</span> mm, coronal "
                     "{{ slice_positions.Green }} mm, sagittal {{ slice_positions.Yellow }} mm (slice offsets)",
                     id="vb-slices", classes="text-caption text-grey")
            html.Div("{{ error }}", id="vb-error", classes="text-caption text-red-lighten-2", v_show=("error",))
            html.Div("{{ message }}", id="vb-message", classes="text-caption text-grey-lighten-1",
                     v_show=("message && !error",))
    return layout


def _autosave_banner(v, app):
    with v.VAlert(v_if=("autosave_offer",), type="info", density="compact", classes="mb-2", id="vb-autosave"):
        v.VCardText("{{ autosave_text }}", classes="pa-0")
        v.VBtn("Restore", id="vb-restore", size="small", click=app.restore_autosave, classes="mr-2")
        v.VBtn("Ignore", size="small", variant="text", click="autosave_offer = false")


def _study_panel(v, html, app):
    with v.VExpansionPanel(title="Study"), v.VExpansionPanelText():
        v.VSelect(label="Image shown", id="vb-background", items=("volumes",), v_model=("background_id",),
                  density="compact", hide_details=True, classes="mb-2")
        v.VSelect(label="Window / level", id="vb-window", items=("window_presets",), v_model=("window_preset",),
                  density="compact", hide_details=True, classes="mb-2")
        html.Div("Segments", classes="text-subtitle-2")
        with html.Table(id="vb-segments", style="width: 100%; font-size: 12px;"), html.Tr(
                v_for="(s, i) in segments", key="s.node_id + s.segment_id"):
            with html.Td():
                v.VCheckboxBtn(model_value=("s.visible",), density="compact",
                               update_modelValue=(app.set_segment, "[s.node_id, s.segment_id, 'visible', $event]"))
            with html.Td():
                html.Input(type="color", value=("s.colour",), style="width: 22px; height: 18px;",
                           change=(app.set_segment, "[s.node_id, s.segment_id, 'colour', $event.target.value]"))
            html.Td("{{ s.name }}", title=("s.node",))
            with html.Td(style="width: 90px;"):
                v.VSlider(model_value=("s.opacity",), min=0, max=1, step=0.1, density="compact", hide_details=True,
                          end=(app.set_segment, "[s.node_id, s.segment_id, 'opacity', $event]"))


def _ai_panel(v, html, app):
    with v.VExpansionPanel(title="AI segmentation"), v.VExpansionPanelText():
        v.VSelect(label="Model", id="vb-model", items=("models",), v_model=("model_key",), density="compact",
                  hide_details=True, classes="mb-2")
        v.VBtn("Run the model", id="vb-segment", click=app.segment, disabled=("busy",), color="primary",
               block=True)
        with html.Div(v_if=("has_ai",), id="vb-ai-summary", classes="mt-2 text-body-2"):
            html.Div("AI tumour: {{ summary.tumour_voxels }} voxels, <b>{{ summary.tumour_ml }} mL</b>; uncertain: "
                     "<b id='vb-uncertain'>{{ summary.uncertain_percent }} %</b> of it "
                     "({{ summary.uncertain_ml }} mL with normalised entropy &ge; {{ summary.threshold }})")
            html.Div("{{ summary.model }}", classes="text-caption text-grey")
            v.VAlert("DEMO model trained on phantoms: not for patients.", v_if=("summary.demo",), type="warning",
                     density="compact", classes="my-1")
            v.VAlert("{{ w }}", v_for="w in warnings", type="warning", density="compact", classes="my-1",
                     id="vb-input-warning")
            v.VCheckbox(label="Uncertainty overlay", v_model=("show_overlay",), density="compact",
                        hide_details=True)
            v.VSlider(label="Opacity", id="vb-overlay-opacity", v_model=("overlay_opacity",), min=0, max=1,
                      step=0.05, density="compact", hide_details=True)
            html.Div(style=("{ background: colour_bar, height: '10px', borderRadius: '2px' }",),
                     id="vb-colour-bar")
            with html.Div(classes="d-flex justify-space-between text-caption"):
                html.Span("0.05 (below: clear)")
                html.Span("normalised predictive entropy")
                html.Span("1")
            html.Div("Outlines: yellow = tumour probability &ge; 10 %, orange = &ge; 50 % (mean over passes)",
                     classes="text-caption")
            html.Div("Where to look (click to centre the views):", classes="text-subtitle-2 mt-2")
            with v.VList(density="compact", id="vb-targets"):
                v.VListItem(v_for="(t, i) in targets", key="i", title=("t.label",), subtitle=("t.where",),
                            click=(app.go_to, "[i]"), classes="vb-target")


def _correction_panel(v, html, app):
    with v.VExpansionPanel(title="Correct"), v.VExpansionPanelText():
        v.VBtn("Start correcting", id="vb-start-correcting", click=app.start_correcting, block=True,
               disabled=("!has_ai || busy",))
        with v.VFileInput(label="or import a corrected segmentation (.seg.nrrd, max 512 MiB)",
                          id="vb-import", density="compact", hide_details=True, classes="mt-2",
                          disabled=("!has_ai",), update_modelValue=(app.upload_correction, "[$event]")):
            pass
        with html.Div(v_if=("correcting",), classes="mt-2"):
            with v.VBtnToggle(v_model=("effect",), density="compact", mandatory=True, divided=True,
                              id="vb-effects", classes="flex-wrap"):
                for name in ("none", "paint", "erase", "scissors", "threshold", "islands", "smoothing"):
                    v.VBtn(name.capitalize() if name != "none" else "Navigate", value=name, id=f"vb-effect-{name}",
                           size="small")
            v.VSlider(label="Brush (mm)", id="vb-brush", v_model=("brush_mm",), min=1, max=30, step=0.5,
                      thumb_label=True, density="compact", hide_details=True,
                      v_if=("effect === 'paint' || effect === 'erase'",))
            with html.Div(v_if=("effect === 'threshold'",)):
                v.VRangeSlider(v_model=("threshold_range",), min=("threshold_limits[0]",),
                               max=("threshold_limits[1]",), thumb_label=True, density="compact",
                               hide_details=True)
                v.VBtn("Apply threshold", id="vb-apply-threshold", size="small",
                       click=(app.apply_effect, "['threshold']"))
            with html.Div(v_if=("effect === 'islands'",)):
                v.VBtn("Keep largest island", id="vb-keep-largest", size="small", classes="mr-1",
                       click=(app.apply_effect, "['keep_largest']"))
                v.VTextField(label="min voxels", v_model_number=("min_island_voxels",), type="number",
                             density="compact", hide_details=True, style="max-width: 110px; display: inline-flex;")
                v.VBtn("Remove small", id="vb-remove-small", size="small",
                       click=(app.apply_effect, "['remove_small']"))
            with html.Div(v_if=("effect === 'smoothing'",)):
                v.VSlider(label="Median kernel (mm)", v_model=("smoothing_mm",), min=1, max=10, step=0.5,
                          thumb_label=True, density="compact", hide_details=True)
                v.VBtn("Apply smoothing", id="vb-apply-smoothing", size="small",
                       click=(app.apply_effect, "['smoothing']"))
            with html.Div(classes="d-flex align-center mt-1", style="gap: 6px;"):
                v.VBtn("Undo", id="vb-undo", size="small", click=app.undo, disabled=("!can_undo",))
                v.VBtn("Redo", id="vb-redo", size="small", click=app.redo, disabled=("!can_redo",))
                html.Span("Corrected tumour: <b id='vb-corrected-voxels'>{{ corrected_voxels }}</b> voxels "
                          "({{ corrected_ml }} mL); the mouse <span id='vb-active-effect'>{{ active_effect }}</span>s",
                          classes="text-caption")


def _compare_panel(v, html, app):
    with v.VExpansionPanel(title="Compare and save"), v.VExpansionPanelText():
        v.VBtn("Compare with the AI result", id="vb-compare", click=app.compare, block=True,
               disabled=("!correcting || busy",))
        with html.Table(id="vb-metrics", v_if=("metrics.length",), style="width: 100%; font-size: 12px;"):
            with html.Tr(v_for="m in metrics", key="m.key", title=("m.description",), classes="vb-metric"):
                html.Td("{{ m.name }}", style="text-decoration: underline dotted; cursor: help;")
                html.Td("{{ m.value }}", style="text-align: right;", classes=("'vb-metric-' + m.key",))
                html.Td("{{ m.unit }}")
        html.Div("Hover a metric for its definition.", v_if=("metrics.length",), classes="text-caption")
        with html.Div(classes="d-flex mt-2", style="gap: 6px;"):
            v.VBtn("Save", id="vb-save", click=app.save, disabled=("!has_ai || busy",), color="primary")
            v.VBtn("Export for retraining", id="vb-export", click=app.export_for_retraining,
                   disabled=("!correcting || busy",))
        with html.Ul(id="vb-saved", v_if=("saved.length",), classes="text-caption"):
            html.Li("{{ f }}", v_for="f in saved", key="f")


def _pipeline_panel(v, html, app):
    with v.VExpansionPanel(title="Habitats, radiomics and outcome"), v.VExpansionPanelText():
        html.Div("On the corrected tumour once there is one, else on the AI result.", classes="text-caption")
        with html.Div(classes="d-flex", style="gap: 6px;"):
            v.VBtn("Fit-Cluster-Fit", id="vb-fcf", click=app.fit_cluster_fit, disabled=("!has_ai || !has_dwi || busy",))
            v.VBtn("Radiomics", id="vb-radiomics", click=app.radiomics, disabled=("!has_ai || busy",))
            v.VBtn("Predict outcome", id="vb-predict", click=app.predict, v_if=("has_outcome_model",),
                   disabled=("!has_ai || busy",))
        with html.Table(id="vb-habitats", v_if=("habitats.length",), style="width: 100%; font-size: 12px;"):
            with html.Tr():
                html.Th("habitat")
                html.Th("volume (mL)")
                html.Th("ADC (10⁻³ mm²/s)")
                html.Th("iAUC60")
            with html.Tr(v_for="h in habitats", key="h.habitat"):
                html.Td("{{ h.habitat }}")
                html.Td("{{ h.volume_ml }}")
                html.Td("{{ h.adc }}")
                html.Td("{{ h.iauc60 }}")
        with html.Div(v_if=("prediction",), id="vb-prediction", classes="mt-2 text-body-2"):
            html.Div("<b>{{ prediction.output }}</b> by '{{ prediction.model }}': {{ prediction.text }} "
                     "(predicted class {{ prediction.predicted }}). Research use only, not for clinical decisions.")
            html.Img(src=("prediction.figure",), style="width: 100%;", id="vb-waterfall",
                     alt="SHAP waterfall: how each radiomics feature moves this patient's prediction")
        with html.Table(id="vb-radiomics-table", v_if=("radiomics.length",), style="width: 100%; font-size: 12px;"):
            with html.Tr(v_for="r in radiomics", key="r.feature"):
                html.Td("{{ r.feature }}")
                html.Td("{{ r.value }}")
