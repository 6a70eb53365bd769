"""gnomon's graph container and node sums stand in for torch-geometric's on the prediction path
(gnomon.models.graph_data): the same numbers, and a `model predict` that never imports
torch-geometric, the phase diagram or matplotlib (issue 27, item 10)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Data as PygData
from torch_geometric.utils import scatter as pyg_scatter

from gnomon.models.graph_data import Data, scatter
from gnomon.models.graphs import collate, crystal_graph
from gnomon.models.peers import CGCNN, PeriodicSchNet


@pytest.mark.parametrize("shape", [(40,), (40, 6), (40, 3, 2)])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("dim_size", [7, 10, None])  # 10: groups 7..9 have no slice
def test_scatter_gives_torch_geometrics_numbers(shape, reduce, dim_size):
    gen = torch.Generator().manual_seed(len(shape))
    src = torch.randn(*shape, generator=gen)
    index = torch.randint(0, 7, (shape[0],), generator=gen)
    ours = scatter(src, index, dim=0, dim_size=dim_size, reduce=reduce)
    theirs = pyg_scatter(src, index, dim=0, dim_size=dim_size, reduce=reduce)
    assert torch.equal(ours, theirs)
    if dim_size == 10:
        assert torch.equal(ours[7:], torch.zeros_like(ours[7:]))


def test_scatter_along_a_later_dimension_and_its_gradient():
    src = torch.randn(3, 8, requires_grad=True)
    index = torch.tensor([0, 0, 1, 2, 2, 2, 3, 1])
    ours = scatter(src, index, dim=1, dim_size=4, reduce="mean")
    assert torch.equal(ours, pyg_scatter(src, index, dim=1, dim_size=4, reduce="mean"))
    ours.sum().backward()
    assert torch.allclose(src.grad[0], torch.tensor([1 / 2, 1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3,
                                                     1.0, 1 / 2]))


def test_scatter_refuses_a_reduction_it_does_not_have():
    with pytest.raises(ValueError, match="'max'"):
        scatter(torch.ones(3), torch.zeros(3, dtype=torch.long), reduce="max")


def test_a_batch_is_what_torch_geometric_would_hold():
    li2o = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.61), ["Li", "O"],
                                     [[0.25, 0.25, 0.25], [0, 0, 0]])
    graph = crystal_graph(li2o, cutoff=5.0)
    batch = collate([graph, graph])
    assert isinstance(graph, Data) and isinstance(batch, Data)
    reference = PygData(z=graph.z, edge_index=graph.edge_index, dist=graph.dist)
    assert torch.equal(graph.z, reference.z) and graph.num_nodes == reference.num_nodes
    assert batch.num_graphs == 2 and batch.num_nodes == 2 * graph.num_nodes
    assert torch.equal(batch.batch, torch.repeat_interleave(torch.arange(2), graph.num_nodes))
    moved = batch.to("cpu")
    assert moved is batch and moved.num_graphs == 2  # in place, counts kept
    again = pickle.loads(pickle.dumps(batch))  # screening workers send graphs between processes
    assert torch.equal(again.edge_index, batch.edge_index) and sorted(again.keys()) == sorted(
        batch.keys())


def test_a_peer_still_builds_on_torch_geometric_layers():
    from torch_geometric.nn import CGConv
    from torch_geometric.nn.models import SchNet

    assert isinstance(PeriodicSchNet(hidden=8, num_layers=1).schnet, SchNet)
    assert isinstance(CGCNN(hidden=8, num_layers=1).convs[0], CGConv)


def test_the_prediction_path_imports_no_torch_geometric_phase_diagram_or_matplotlib():
    """What `model predict` of a file imports: the command, the model code, the pretrained
    model and the candidate reader; none of them pulls in the heavy packages it never uses."""
    code = (
        "import sys, gnomon.commands.model, gnomon.models.registry, gnomon.models.pretrained, "
        "gnomon.models.screening, gnomon.pipeline.generation.candidate_io; "
        "heavy = ('torch_geometric', 'matplotlib', 'pymatgen.analysis.phase_diagram', "
        "'pymatgen.entries.compatibility', 'pymatgen.analysis.structure_matcher'); "
        "print(sorted(m for m in heavy if m in sys.modules), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"]
