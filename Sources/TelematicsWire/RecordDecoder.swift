/// A record that passed every check of WIRE.md: its envelope and a view of
/// its body.
///
/// Views only: valid while the record buffer is, and (for a compressed body)
/// until the next call on the ``RecordDecoder`` that made it.
public struct DecodedRecord {
    public let envelope: Envelope
    public let body: BodyView

    @usableFromInline
    init(envelope: Envelope, body: BodyView) {
        self.envelope = envelope
        self.body = body
    }

    /// An owned copy (allocates).
    public func materialize() -> TelematicsMessage {
        TelematicsMessage(vin: envelope.vin, sequence: envelope.sequence, recordedAtMs: envelope.recordedAtMs, body: body.materialize())
    }
}

/// Decodes records for one worker: envelope, decompression, validation.
///
/// Holds one zstd context and one 1 MiB output buffer, reused for every
/// record, so decoding allocates nothing per record. Not thread-safe: one
/// per worker; the dictionaries are shared.
public final class RecordDecoder {
    @usableFromInline let decompressor: ZstdDecompressor

    public init(dictionaries: ZstdDictionaries = .none) {
        decompressor = ZstdDecompressor(dictionaries: dictionaries)
    }

    /// Checks and decodes one record value. `key`, when given (a Kafka
    /// record's key), must equal the envelope's VIN.
    @inlinable
    public func decode(_ record: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer? = nil) throws(WireError) -> DecodedRecord {
        let envelope = try Envelope(parsing: record, key: key)
        let body = envelope.isCompressed ? try decompressor.decompress(envelope.body) : envelope.body
        return DecodedRecord(
            envelope: envelope,
            body: try BodyView(validating: body, kind: envelope.kind, recordedAtMs: envelope.recordedAtMs))
    }
}
