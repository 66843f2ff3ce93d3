import BraidGraph
