"""A step's results as DICOM objects beside its source series: what ``segment``, ``fcf`` and the demo
write into ``OUT/dicom/`` (the commands and the Slicer modules call these; Qt-free)."""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.dicom import export
from virtualbiopsy.dicom.report import Quantity, SegmentFinding, write_measurement_report


def export_ai_segmentation(outputs, source, folder: str | Path, demo: bool) -> list[Path]:
    """The AI segmentation (``NeuroblastomaSegLogic.segment`` outputs) as a DICOM SEG (AUTOMATIC, the model
    named; ``demo`` says it is the DEMO model), its tumour volume and uncertain fraction as an SR, and the
    uncertainty (0-1) as a Parametric Map, each referencing ``source`` (the volume read from DICOM)."""
    from virtualbiopsy.mrml import arrays

    folder = Path(folder)
    export.require_dicom_source(source)
    algorithm = export.ai_algorithm(outputs.segmentation, demo)
    seg = export.write_segmentation(outputs.segmentation, source, folder / "segmentation_seg.dcm", algorithm,
                                    series_description="AI tumour segmentation")
    summary = outputs.summary
    tumour = outputs.segmentation.GetSegmentation().GetSegment(arrays.segment_ids(outputs.segmentation)[0])
    quantities = [Quantity("volume_ml", summary["tumour_volume_ml"])]  # the tumour is the first segment
    if outputs.uncertainty is not None:
        quantities.append(Quantity("uncertain_percent", 100 * summary["uncertain_fraction"]))
    written = [seg, write_measurement_report(seg, export.source_datasets(source),
                                             [SegmentFinding(1, tumour.GetName(), quantities)],
                                             folder / "measurements_sr.dcm", algorithm, "AI tumour measurements")]
    if outputs.uncertainty is not None:
        written.append(export.write_parametric_map(
            outputs.uncertainty, source, folder / "uncertainty_pm.dcm", "Uncertainty",
            "normalised predictive entropy 0-1", "1", series_number=903, scale=1.0 / 255.0))
    return written


def export_habitats(outputs, source, folder: str | Path, window_s: float) -> list[Path]:
    """Fit-Cluster-Fit outputs: ADC and its SE (and iAUC) as Parametric Maps, the habitats as a SEG, and
    each habitat's ADC (with its CI), voxel-mean ADC, volume, share and iAUC as an SR referencing it."""
    from virtualbiopsy.mrml import arrays

    folder = Path(folder)
    export.require_dicom_source(source)
    algorithm = export.Algorithm("AUTOMATIC", "Fit-Cluster-Fit habitats")
    written = [
        export.write_parametric_map(outputs.adc, source, folder / "adc_pm.dcm", "ADC",
                                    "apparent diffusion coefficient, monoexponential fit", "mm2/s", 902),
        export.write_parametric_map(outputs.adc_se, source, folder / "adc_se_pm.dcm", "ADC SE",
                                    "standard error of the ADC fit", "mm2/s", 903),
    ]
    seg = export.write_segmentation(outputs.habitats, source, folder / "habitats_seg.dcm", algorithm,
                                    series_description="Fit-Cluster-Fit habitats", series_number=904)
    written.append(seg)
    if "iauc" in outputs.dce:
        written.append(export.write_parametric_map(outputs.dce["iauc"], source, folder / "iauc_pm.dcm",
                                                   f"iAUC{window_s:g}", "initial area under the curve", "s", 905))
    columns = arrays.table_columns(outputs.table)
    total = sum(float(v) for v in columns["volume_ml"])
    iauc = next((name for name in columns if name.startswith("iauc") and not name.endswith(("_true", "_low",
                                                                                              "_high"))), None)
    findings = []
    for row, name in enumerate(columns["habitat"]):
        volume = float(columns["volume_ml"][row])
        quantities = [Quantity("adc_um2_s", float(columns["adc"][row]) * 1e6,
                               (float(columns["adc_ci_low"][row]) * 1e6, float(columns["adc_ci_high"][row]) * 1e6)),
                      Quantity("voxel_mean_adc_um2_s", float(columns["voxel_mean_adc"][row]) * 1e6),
                      Quantity("volume_ml", volume),
                      Quantity("fraction_percent", 100 * volume / total if total else float("nan"))]
        if iauc is not None:
            quantities.append(Quantity("iauc_s", float(columns[iauc][row])))
        findings.append(SegmentFinding(row + 1, str(name), quantities))
    written.append(write_measurement_report(seg, export.source_datasets(source), findings,
                                            folder / "measurements_sr.dcm", algorithm,
                                            "Fit-Cluster-Fit habitat measurements", series_number=951))
    return written
