"""The stdlib-only layer of mlenv.

Everything that runs inside an image build step or a container lives here: the
installer, the inventory behind `mlenv verify --image`, the build-step bootstrap,
and the few primitives they need (atomic writes, credential scrubbing, name
normalization). It imports nothing from mlenv outside this package and nothing
outside the standard library at module top, so it is shipped whole into build
steps (no module list). Host code builds on it: it is the bottom of mlenv's
import graph.
"""
