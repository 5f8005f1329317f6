import TelematicsPipeline
import TelematicsStores
import TelematicsWire

/// Re-seals every charge session not sealed with the current key, in
/// batches (`telematics keys rotate`): the position and the session id are
/// opened with their key and sealed with the current one; a row written
/// before schema 5 (session id in the clear) gets its id sealed and its
/// keyed reference as `session_id`. Each batch is written in one
/// transaction, only where a row still has the key it was read with, so a
/// rotation running beside the pipeline, or twice, is safe. A session whose
/// key is not configured is reported and left as it is.
public struct KeyRotation: Sendable {
    public let store: any TelematicsStore
    public let secrets: PipelineSecrets
    /// Sessions per batch.
    public var batchSize = 1_000

    public init(store: any TelematicsStore, secrets: PipelineSecrets) {
        self.store = store
        self.secrets = secrets
    }

    /// What a rotation did.
    public struct Outcome: Sendable, Hashable {
        /// Sessions re-sealed with the current key.
        public var resealed = 0
        /// Sessions left because their key is missing or they do not open, by key id.
        public var unreadable: [String: Int] = [:]
    }

    /// Rotates everything; `progress` sees the running outcome after each batch.
    public func run(progress: (@Sendable (Outcome) -> Void)? = nil) async throws(StoreError) -> Outcome {
        let sealer = PositionSealer(keyID: secrets.sealingKeyID, keys: secrets.sealingKeys)
        let references = SessionReferences(pseudonymKey: secrets.pseudonymKey)
        var outcome = Outcome()
        while true {
            // Unreadable rows stay behind: read past them.
            let limit = batchSize + outcome.unreadable.values.reduce(0, +)
            let rows = try await store.sessionsToReseal(keyID: sealer.keyID, limit: limit)
            var replaced: [(old: SealedSession, new: SealedSession)] = []
            var unreadable: [String: Int] = [:]
            for row in rows {
                do {
                    replaced.append((row, try Self.resealed(row, sealer: sealer, references: references)))
                } catch {
                    unreadable[row.keyID ?? "(none)", default: 0] += 1
                }
            }
            outcome.unreadable = unreadable
            if replaced.isEmpty {
                if rows.count < limit { break }
                continue
            }
            outcome.resealed += try await store.reseal(replaced)
            progress?(outcome)
        }
        return outcome
    }

    /// The row with its parts opened and sealed again with the current key.
    static func resealed(_ row: SealedSession, sealer: PositionSealer, references: SessionReferences) throws -> SealedSession {
        // The id: sealed under the row's key, or (before schema 5) the stored id itself.
        let sessionID: String
        if let sealedID = row.sealedSessionID, let keyID = row.keyID {
            sessionID = try sealer.openSessionID(sealedID, keyID: keyID, vin: row.vin, reference: row.sessionID)
        } else if row.sealedSessionID == nil {
            sessionID = row.sessionID
        } else {
            throw PositionSealer.SealingError.malformed
        }
        let position = try row.sealedPosition.map { sealed -> Position in
            guard let keyID = row.keyID else { throw PositionSealer.SealingError.malformed }
            return try sealer.open(sealed, keyID: keyID, vin: row.vin, sessionID: row.sessionID)
        }
        let reference = references.reference(vin: row.vin, sessionID: sessionID)
        return SealedSession(
            vin: row.vin, sessionID: reference,
            sealedPosition: try position.map { try sealer.seal($0, vin: row.vin, sessionID: reference) },
            sealedSessionID: try sealer.sealSessionID(sessionID, vin: row.vin, reference: reference), keyID: sealer.keyID)
    }
}
