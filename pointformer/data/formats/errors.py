"""The one error type raised for malformed or inconsistent input files."""

from pointformer.utils.errors import InputError


class DataFormatError(InputError, ValueError):
    """Input data does not follow its format: truncation, a checksum mismatch, malformed
    protobuf, an undecompressible payload, or arrays whose sizes disagree.

    Messages name what is known of the location: file, record index and byte offset, the message
    type and the field path.
    """
