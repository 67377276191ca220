"""Command-line output helpers shared by the sub-commands."""

from __future__ import annotations

from pathlib import Path

import vtk


def quiet_vtk(log_file: Path) -> None:
    """Send VTK/MRML messages (zip chatter, reader notes) to ``log_file`` instead of the terminal."""
    window = vtk.vtkFileOutputWindow()
    window.SetFileName(str(log_file))
    window.SetFlush(True)
    vtk.vtkOutputWindow.SetInstance(window)
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
