"""What the command line says: demo --help lists each step and every output of a real run; segment --help offers
only the options it has; the b-values option has one spelling (the others still work, hidden); ADC units are
written one way; nnU-Net's CUDA-only notice is not shown on a CPU run; the radiomics cohort summary never
counts a failed case as computed; messages about one image name its file."""

from __future__ import annotations

import re

import pytest

from virtualbiopsy.cli import demo as demo_command
from virtualbiopsy.cli.fcf import B_VALUES_ALIASES
from virtualbiopsy.cli.main import COMMANDS, build_parser, main

PROGRESS_LINE = re.compile(r"^\[\s*\d+\.\d%\]")
# Ways of writing the ADC unit other than '×10⁻³ mm²/s' (or mm²/s for a value in mm²/s).
OTHER_UNIT_SPELLINGS = ("10^-3", "10-3 mm", "1e-3 mm", "e-3 mm", "mm^2", "mm2/s", "mm2 /s", "x10", "10**-3")


def help_text(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, "\n".join(line for line in err.splitlines() if not PROGRESS_LINE.match(line))


def test_demo_help_lists_every_step_and_each_output_it_writes(capsys):
    text = help_text(capsys, "demo")
    flat = " ".join(text.split())
    for step in ("sample study", "nnU-Net segmentation with uncertainty", "radiomics with the IBSI check", "ADC fit",
                 "Fit-Cluster-Fit habitats with DCE", "DICOM export", "SHAP", "Kaplan-Meier", "Grad-CAM",
                 "report.html", "scene.mrb", "radiomics/ibsi/ibsi_compliance.html", "in mm²/s"):
        assert step in flat, step
    starts = [line[2:] for line in text.splitlines() if re.match(r"^  \S", line)]
    names = [name for name, _ in demo_command.OUTPUTS]
    assert len(starts) >= len(names)  # one line per output, in the order the demo writes them
    assert all(start.startswith(name + " ") for start, name in zip(starts, names)), starts
    assert all(len(line) <= 80 for line in text.splitlines())


@pytest.mark.slow
def test_demo_help_names_every_top_level_output_of_a_real_run(tmp_path):
    from virtualbiopsy.demo import run_demo

    run_demo(tmp_path / "out")
    written = {p.name + ("/" if p.is_dir() else "") for p in (tmp_path / "out").iterdir()}
    listed = {name.strip() for names, _ in demo_command.OUTPUTS for name in names.split(",")}
    assert listed == written


def test_segment_help_offers_no_mask_and_shows_plain_percent_signs(capsys):
    text = help_text(capsys, "segment")
    assert "--mask" not in text and "Otsu body mask" in text
    segment = build_parser()._subparsers._group_actions[0].choices["segment"]
    assert not [a for a in segment._actions if "--mask" in a.option_strings]
    for command in COMMANDS:
        assert "%%" not in help_text(capsys, command), command


@pytest.mark.parametrize("command", COMMANDS)
def test_b_values_and_adc_units_have_one_spelling_in_every_help(command, capsys):
    text = " ".join(help_text(capsys, command).split())
    for other in ("--bvalues", "--b_values", "--bvals", "--override-bvalues", *OTHER_UNIT_SPELLINGS):
        assert other not in text, (command, other)
    options = [option for action in build_parser()._subparsers._group_actions[0].choices[command]._actions
               if action.help != "==SUPPRESS==" for option in action.option_strings]
    b_options = [o for o in options if "bval" in o.replace("-", "").replace("_", "")]
    assert all(re.fullmatch(r"--(override-)?b-values?(-[a-z]+)*", o) for o in b_options), b_options
    if command in ("fcf", "phantom"):
        assert "--b-values" in b_options


@pytest.mark.parametrize("spelling", ["--b-values", *B_VALUES_ALIASES])
def test_the_other_b_values_spellings_are_still_accepted(spelling):
    parser = build_parser()
    args = parser.parse_args(["fcf", "--dwi", "dwi.seq.nrrd", "--mask", "mask.nrrd", "--out", "out", spelling,
                              "0,50,400,800", "--override-bvalues"])
    assert args.bvalues == "0,50,400,800" and args.override_bvalues
    assert not parser.parse_args(["fcf", "--dwi", "d", "--mask", "m", "--out", "o"]).override_bvalues


@pytest.mark.slow
def test_fcf_with_an_old_spelling_names_the_files_and_writes_adc_in_one_unit(sample_study_folder, tmp_path, capsys):
    study = sample_study_folder(0)
    code, _, err = run(capsys, "fcf", "--dwi", study / "dwi.seq.nrrd", "--mask", study / "t2w_labels.nrrd",
                       "--out", tmp_path / "off_grid")
    assert code == 2 and "'t2w_labels.nrrd' is not on the voxel grid of 'volume 1 of dwi.seq.nrrd'" in err
    code, out, err = run(capsys, "fcf", "--dwi", study / "dwi.seq.nrrd", "--mask", study / "dwi_labels.nrrd",
                         "--label", "6", "--bvalues", "0,50,400,900", "--out", tmp_path / "conflict")
    assert code == 2 and "--b-values says 0,50,400,900" in err and "--override-b-values" in err
    code, out, err = run(capsys, "fcf", "--dwi", study / "dwi.seq.nrrd", "--mask", study / "dwi_labels.nrrd",
                         "--label", "6", "--k", "2", "--bootstrap", "50", "--out", tmp_path / "fcf")
    assert code == 0, err
    habitats = [line for line in out.splitlines() if line.strip().startswith("habitat ")]
    assert len(habitats) == 2 and all(line.count("×10⁻³ mm²/s") == 1 for line in habitats)
    assert not [s for s in OTHER_UNIT_SPELLINGS if s in "\n".join(habitats)]


@pytest.mark.slow
def test_a_cpu_segmentation_does_not_print_the_cuda_only_notice_and_names_its_files(sample_study_folder, tmp_path,
                                                                                     capsys):
    from virtualbiopsy.segmentation.demo_model import demo_model_path

    study = sample_study_folder(0)
    code, out, err = run(capsys, "segment", "--model", demo_model_path(), "--image", study / "t2w.nrrd",
                         "--device", "cpu", "--out", tmp_path / "seg")
    assert code == 0, err
    assert "perform_everything_on_device" not in out + err and "cuda" not in (out + err).lower()
    assert out.startswith("t2w.nrrd: tumour ")
    code, _, err = run(capsys, "segment", "--model", demo_model_path(), "--image", study / "t2w.nrrd", "--image",
                       study / "adc_true.nrrd", "--device", "cpu", "--out", tmp_path / "two")
    assert code == 2 and "2 were given (t2w.nrrd, adc_true.nrrd)" in err


def test_the_radiomics_cohort_summary_does_not_count_a_failed_case_as_computed(tmp_path, capsys):
    from virtualbiopsy.radiomics.ibsi import phantom_paths

    phantom = phantom_paths()
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case_id,image,mask\n"
                        f"good,{phantom['image']},{phantom['mask']}\n"
                        f"missing,{tmp_path / 'none.nii.gz'},{phantom['mask']}\n"
                        f"again,{phantom['image']},{phantom['mask']}\n")
    code, out, _ = run(capsys, "radiomics", "--manifest", manifest, "--out", tmp_path / "out")
    assert code == 3
    assert out.startswith("3 case(s): 2 computed, 0 reused from an earlier run, 1 failed -> ")
    assert "missing: No image file at" in out and "none.nii.gz" in out
    code, out, _ = run(capsys, "radiomics", "--manifest", manifest, "--out", tmp_path / "out")
    assert code == 3 and out.startswith("3 case(s): 0 computed, 2 reused from an earlier run, 1 failed -> ")


def test_preprocess_and_compare_messages_about_one_image_name_its_file(sample_study_folder, tmp_path, capsys):
    study = sample_study_folder(0)
    code, _, err = run(capsys, "preprocess", "--image", study / "t2w.nrrd", "--mask", study / "dwi_labels.nrrd",
                       "--n4", "--out", tmp_path / "n4.nrrd")
    assert code == 2 and "'dwi_labels.nrrd' is not on the voxel grid of 't2w.nrrd'" in err
    code, _, err = run(capsys, "compare", "--ai", study / "ground_truth.seg.nrrd", "--segment", "tumour core",
                       "--corrected", study / "dwi_labels.nrrd", "--corrected-segment", "7", "--out",
                       tmp_path / "compare")
    assert code == 2 and "of 'ground_truth.seg.nrrd' is not on the voxel grid of 'dwi_labels.nrrd'" in err, err
