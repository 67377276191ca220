"""The scene and application logics that 3D Slicer wires up, made available without Qt.

Inside Slicer, :meth:`MRMLContext.attach` wraps the application's scene and module logics.
Headless (command line, tests), :meth:`MRMLContext.create` builds the same wiring on a new
scene: application logic, default colour nodes, Volumes, Segmentations, Tables and
Subject-hierarchy logics, as ``qSlicerCoreApplication`` would.

>>> context = MRMLContext.create()
>>> context.scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") > 0
True
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import slicer
import vtk


@dataclass
class MRMLContext:
    """A scene plus the module logics that logic code needs, inside Slicer or headless."""

    scene: Any
    app_logic: Any
    color_logic: Any
    volumes_logic: Any
    segmentations_logic: Any
    tables_logic: Any = None
    subject_hierarchy_logic: Any = None
    _owned: list = field(default_factory=list, repr=False)

    @classmethod
    def create(cls) -> MRMLContext:
        """A new headless scene wired like Slicer's (no Qt, no views)."""
        scene = slicer.vtkMRMLScene()
        app_logic = slicer.vtkSlicerApplicationLogic()
        app_logic.SetMRMLScene(scene)
        app_logic.SetSliceLogics(vtk.vtkCollection())
        app_logic.SetViewLogics(vtk.vtkCollection())

        color_logic = slicer.vtkMRMLColorLogic()
        color_logic.SetMRMLApplicationLogic(app_logic)
        color_logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic("Colors", color_logic)

        def module_logic(logic_class, name):
            logic = logic_class()
            logic.SetMRMLScene(scene)
            logic.SetMRMLApplicationLogic(app_logic)
            app_logic.SetModuleLogic(name, logic)
            return logic

        context = cls(
            scene=scene,
            app_logic=app_logic,
            color_logic=color_logic,
            volumes_logic=module_logic(slicer.vtkSlicerVolumesLogic, "Volumes"),
            segmentations_logic=module_logic(slicer.vtkSlicerSegmentationsModuleLogic, "Segmentations"),
            tables_logic=module_logic(slicer.vtkSlicerTablesLogic, "Tables"),
            subject_hierarchy_logic=module_logic(
                slicer.vtkSlicerSubjectHierarchyModuleLogic, "SubjectHierarchy"
            ),
        )
        return context

    @classmethod
    def attach(cls, scene, app_logic) -> MRMLContext:
        """Wrap the running Slicer application's scene and logics (no new logics are made).

        In a module widget: ``MRMLContext.attach(slicer.mrmlScene, slicer.app.applicationLogic())``.
        """

        def get(name):
            logic = app_logic.GetModuleLogic(name)
            if logic is None:
                raise RuntimeError(f"The Slicer module '{name}' is not loaded; it is required.")
            return logic

        return cls(
            scene=scene,
            app_logic=app_logic,
            color_logic=get("Colors"),
            volumes_logic=get("Volumes"),
            segmentations_logic=get("Segmentations"),
            tables_logic=app_logic.GetModuleLogic("Tables"),
            subject_hierarchy_logic=app_logic.GetModuleLogic("SubjectHierarchy"),
        )

    # -- scene state -------------------------------------------------------------------------

    def node_ids(self) -> set[str]:
        """IDs of every node in the scene (used to check that failed steps leave it unchanged)."""
        scene = self.scene
        return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}

    @contextmanager
    def transaction(self, protect=()):
        """Remove every node added inside the block, and restore the nodes in ``protect``, if the block raises.

        Logic wraps each step that adds nodes in a transaction, so that a bad input or a cancel
        leaves the scene as it was: the user's work is never half-overwritten. Nodes that exist
        before the block and are filled inside it (an output table, volume or segmentation the
        user passed in) go in ``protect``: their content (table cells, voxels and geometry,
        segments, attributes) is deep-copied first and copied back on failure. Logic still
        validates before touching any node; this is the safety net for failures half-way.
        """
        before = self.node_ids()
        saved = [(node, _content_copy(node)) for node in protect if node is not None]
        try:
            yield self
        except BaseException:
            for node_id in self.node_ids() - before:
                node = self.scene.GetNodeByID(node_id)
                if node is not None:
                    self.scene.RemoveNode(node)
            for node, copy in saved:
                node.CopyContent(copy, True)
            raise

    def add_node(self, class_name: str, name: str):
        """Add a new node of ``class_name`` with a unique name derived from ``name``."""
        node = self.scene.AddNewNodeByClass(class_name, self.scene.GenerateUniqueName(name))
        return node


def _content_copy(node):
    """A deep copy of a node's content (not added to any scene), for :meth:`MRMLContext.transaction`."""
    if not node.HasCopyContent():
        raise TypeError(f"'{node.GetName()}' ({node.GetClassName()}) cannot be protected: it has no content copy.")
    copy = node.CreateNodeInstance()
    copy.CopyContent(node, True)
    return copy
