"""Fixtures shared across test folders (built only when a test asks for them)."""

pytest_plugins = [
    "tests.support.onnx_models",  # fp32_models: exported mbf/r18 models, session-scoped
    "tests.support.face_folders",  # identity_folder, identity_rec: three identities as files and as RecordIO
]
