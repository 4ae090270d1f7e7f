"""OCI images without a daemon: blobs, layers, manifests, and the distribution API.

This package knows the OCI image format and the registry protocol, nothing of
mlenv's specs or locks. Modules:

- store.py     the content-addressed blob store (an OCI image layout's blobs/ dir)
               and the Descriptor type every other module passes around.

The image builder (mlenv.image) and the environment registry on OCI
(mlenv.registry.oci) are its clients.
"""
