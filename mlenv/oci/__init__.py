"""OCI images without a daemon: blobs, layers, manifests, and the distribution API.

This package knows the OCI image format and the registry protocol, nothing of
mlenv's specs or locks. Modules:

- store.py     the content-addressed blob store (an OCI image layout's blobs/ dir)
               and the Descriptor type every other module passes around.
- transport.py sessions: plain http + no proxy for loopback, https + CA bundle elsewhere.
- auth.py      registry credentials (env, Docker config, credential helpers) and the
               401 handshake (basic, bearer tokens cached per scope): mlenv's one home.
- client.py    the distribution API (manifests, blobs, mount, monolithic/chunked
               upload) and remote_has(), the one-HEAD reuse check.
- manifest.py  parsers of manifests, indexes and configs; platform selection.
- pull.py      pull_image() from a registry, pull_base() from a registry or the Engine.
- engine.py    a local Docker Engine as source (docker save) and sink (docker load).
- push.py      push_image(): HEAD / mount / upload, then manifest, then tags.
- layout.py    OCI image layout (dir or deterministic tar), the docker-load archive.
- locations.py which repositories of a registry hold a blob (mount sources).
- layer.py     the deterministic layer writer: entries -> tar (own ustar/PAX encoder)
               -> multi-member gzip (pinned libdeflate) -> blob, diff_id, size.
- image.py     config + manifest assembly from a base (canonical JSON, fixed created).
- rootfs.py    an image's merged file system read from its layer blobs (whiteouts).

See docs/oci.md.

The image builder (mlenv.image) and the environment registry on OCI
(mlenv.registry.oci) are its clients.
"""
