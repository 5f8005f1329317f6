import Metrics
import TelematicsKafka
import TelematicsStores
import TelematicsWire

/// Everything one polled batch of records causes, ready to be made durable:
/// the store writes (one transaction), the messages to publish (alerts,
/// hazards, dead letters) and the offsets to commit once both are durable.
public struct PreparedBatch: Sendable {
    public var store = StoreBatch()
    public var outputs: [KafkaProducerMessage] = []
    /// The last offset processed per partition (committed as offset + 1).
    public var offsets: [KafkaTopicPartition: Int64] = [:]
    public var tally = BatchTally()
    /// Alerts handed to the emergency lane while routing: the batch commits
    /// only once every one of them is durable.
    public var handedOver: [Task<Void, Never>] = []
    /// The lane's revocation count when the batch was polled
    /// (`DurableOffsets.ticket`).
    var ticket = 0

    /// Adds the effects of `other`, another shard of the same polled batch
    /// (``BulkLane`` routes a batch in shards by vehicle), after these.
    mutating func append(contentsOf other: PreparedBatch) {
        store.append(contentsOf: other.store)
        outputs += other.outputs
        offsets.merge(other.offsets, uniquingKeysWith: max)
        tally.add(other.tally)
        handedOver += other.handedOver
    }

    /// The offsets to commit.
    public var processedOffsets: [KafkaProcessedOffset] {
        offsets.map { KafkaProcessedOffset(topic: $0.key.topic, partition: $0.key.partition, offset: $0.value) }
    }
}

/// What happened to the records of a batch, by outcome.
public struct BatchTally: Sendable {
    public var records = 0
    public var byKind: [MessageKind: Int] = [:]
    public var rejected: [WireError.Code: Int] = [:]
    /// Records dropped because a consent setting forbids them (RULES.md): counted, not errors.
    public var droppedForConsent: [String: Int] = [:]
    public var alerts = 0
    public var hazards = 0

    mutating func add(_ other: BatchTally) {
        records += other.records
        byKind.merge(other.byKind, uniquingKeysWith: +)
        rejected.merge(other.rejected, uniquingKeysWith: +)
        droppedForConsent.merge(other.droppedForConsent, uniquingKeysWith: +)
        alerts += other.alerts
        hazards += other.hazards
    }

    /// Adds this tally to the process's metrics (swift-metrics): records by
    /// kind, rejects by code, drops by consent reason.
    func exportMetrics() {
        for (kind, n) in byKind where n > 0 {
            Counter(label: "telematics_records_total", dimensions: [("kind", "\(kind.name)")]).increment(by: n)
        }
        for (code, n) in rejected where n > 0 {
            Counter(label: "telematics_rejected_total", dimensions: [("code", code.rawValue)]).increment(by: n)
        }
        for (reason, n) in droppedForConsent where n > 0 {
            Counter(label: "telematics_dropped_for_consent_total", dimensions: [("reason", reason)]).increment(by: n)
        }
    }

    /// This tally as counter deltas (``PipelineCounter`` names), zeros left
    /// out: what the router knows; the store adds stored and duplicates.
    public var counters: [String: Int] {
        var out: [String: Int] = [:]
        for (kind, n) in byKind where n != 0 { out[PipelineCounter.processed("\(kind.name)")] = n }
        for (code, n) in rejected where n != 0 { out[PipelineCounter.rejected(code.rawValue)] = n }
        for (reason, n) in droppedForConsent where n != 0 { out[PipelineCounter.dropped(reason)] = n }
        if alerts != 0 { out[PipelineCounter.alerts] = alerts }
        if hazards != 0 { out[PipelineCounter.hazards] = hazards }
        return out
    }
}

/// Applies RULES.md to decoded records and collects their effects.
///
/// One per routing shard of a bulk lane: it owns its decoder (zstd context
/// and buffer) and the consent book of its vehicles (the lane gives each
/// vehicle's records to one shard), and handles batches strictly in order,
/// so consent changes apply to every message of the vehicle processed
/// after them.
///
/// Unchecked Sendable: the lane hands it to its routing thread one batch at
/// a time and never touches it concurrently.
final class BatchRouter: @unchecked Sendable {
    private let decoder: RecordDecoder
    private let topics: PipelineTopics
    private var pseudonyms: PseudonymCache
    private let sealer: PositionSealer
    private let sessionReferences: SessionReferences
    private(set) var consent: ConsentBook
    /// The batch being routed (``beginBatch(_:durableBatches:revocations:)``).
    private var batch = 0
    /// Where alerts go at once; without it they are published with the batch.
    private let emergency: EmergencyLane?
    /// P1 alerts of the batch being routed, handed over together at its end.
    private var urgent: [CallCentreAlert] = []

    init(dictionaries: ZstdDictionaries, topics: PipelineTopics, secrets: PipelineSecrets, emergency: EmergencyLane? = nil,
         consentCapacity: Int = 1_000_000) {
        self.emergency = emergency
        consent = ConsentBook(capacity: consentCapacity)
        decoder = RecordDecoder(dictionaries: dictionaries)
        self.topics = topics
        pseudonyms = PseudonymCache(Pseudonymizer(key: secrets.pseudonymKey))
        sealer = PositionSealer(keyID: secrets.sealingKeyID, keys: secrets.sealingKeys)
        sessionReferences = SessionReferences(pseudonymKey: secrets.pseudonymKey)
    }

    /// Starts batch number `batch` (``ConsentBook/beginBatch(_:durableBatches:revocations:)``),
    /// before ``unknownVINs(in:)`` is asked of it.
    func beginBatch(_ batch: Int, durableBatches: Int, revocations: Int) {
        self.batch = batch
        consent.beginBatch(batch, durableBatches: durableBatches, revocations: revocations)
    }

    /// VINs of the batch whose consent state is not known yet (read from the
    /// envelope header without decoding; bad records are simply skipped here).
    func unknownVINs(in records: some Sequence<KafkaRecord>) -> [VIN] {
        var missing = Set<VIN>()
        for record in records {
            guard let vin = VIN(peekingAt: record.value) else { continue }
            if !consent.knows(vin) { missing.insert(vin) }
        }
        return Array(missing)
    }

    /// Takes stored consent for the VINs `unknownVINs` named.
    func warmConsent(_ vins: [VIN], loaded: [VIN: StoredConsent]) {
        consent.warm(loaded)
        for vin in vins where loaded[vin] == nil { consent.markDefault(vin) }
    }

    /// Routes every record of `records` (in order) into one prepared batch.
    /// The probes' aggregate deltas are left to sort
    /// (``StoreBatch/prepareProbes()``) once the shards are together.
    func route(_ records: some Sequence<KafkaRecord>) -> PreparedBatch {
        var prepared = PreparedBatch()
        var topicName = ""
        var topicKey: (partition: Int32, pointer: UnsafeRawPointer?) = (-1, nil)
        for record in records {
            // The topic name is read once per run of records of one topic.
            let namePointer = record.withTopicName { $0.baseAddress }
            if namePointer != topicKey.pointer {
                topicName = record.topic
                topicKey = (record.partition, namePointer)
            }
            let partition = KafkaTopicPartition(topic: topicName, partition: record.partition)
            prepared.offsets[partition] = max(prepared.offsets[partition] ?? -1, record.offset)
            prepared.tally.records += 1
            let value = record.value
            let key = record.key ?? UnsafeRawBufferPointer(start: nil, count: 0)
            do throws(WireError) {
                let decoded = try decoder.decode(value, key: key)
                prepared.tally.byKind[decoded.envelope.kind, default: 0] += 1
                apply(decoded, to: &prepared)
            } catch {
                prepared.tally.rejected[error.code, default: 0] += 1
                prepared.outputs.append(KafkaProducerMessage(
                    topic: topics.deadLetter, key: record.key.map(Array.init), value: Array(value),
                    headers: DeadLetter.headers(error: error, topic: topicName, partition: record.partition, offset: record.offset)))
            }
        }
        // Committed with the batch's data, so they agree with it after a crash;
        // a redelivered batch is counted again (StoreBatch explains why).
        prepared.store.counters = prepared.tally.counters
        if let emergency, !urgent.isEmpty {
            prepared.handedOver.append(emergency.submit(urgent))
            urgent.removeAll()
        }
        return prepared
    }

    /// An alert for the call centre: to the emergency lane at once when
    /// there is one (it stores, deduplicates and publishes), else published
    /// with the batch.
    private func raise(_ alert: CallCentreAlert, in prepared: inout PreparedBatch) {
        if let emergency {
            // P0 goes over this moment; P1 calls go together when the batch
            // is routed (milliseconds later), stored in one transaction.
            if alert.priority == "P0" {
                prepared.handedOver.append(emergency.submit([alert]))
            } else {
                urgent.append(alert)
            }
        } else {
            prepared.outputs.append(KafkaProducerMessage(topic: topics.alerts, key: Array(alert.vin.utf8), value: OutputEncoding.json(alert)))
        }
        prepared.tally.alerts += 1
    }

    private func apply(_ record: DecodedRecord, to prepared: inout PreparedBatch) {
        let e = record.envelope
        switch record.body {
        case .consentState(let state):
            let change = ConsentChange(vin: e.vin, state: state, recordedAtMs: e.recordedAtMs, sequence: e.sequence)
            if consent.apply(change, inBatch: batch), change.deletesChargeSessions {
                // The store applies consent before sessions, so sessions of this
                // batch processed before the switch-off would outlive it.
                let before = prepared.store.chargeSessions.count
                prepared.store.chargeSessions.removeAll { $0.vin == e.vin }
                prepared.tally.droppedForConsent["charging_history", default: 0] += before - prepared.store.chargeSessions.count
            }
            prepared.store.consentChanges.append(change)

        case .hvWarnCall(let call):
            // P0: never dropped for consent (RULES.md).
            raise(CallCentreAlert(hvWarnCall: call, envelope: e), in: &prepared)

        case .teleserviceCall(let call):
            let state = consent.state(of: e.vin)
            let urgent = call.trigger == .breakdown || call.trigger == .accident
            if call.trigger == .smartMaintenance && !state.smartMaintenance {
                prepared.tally.droppedForConsent["smart_maintenance", default: 0] += 1
                return
            }
            if !state.teleservices && !urgent {
                prepared.tally.droppedForConsent["teleservices", default: 0] += 1
                return
            }
            if urgent {
                raise(CallCentreAlert(urgentCall: call, envelope: e), in: &prepared)
            }
            prepared.store.teleserviceCalls.append(TeleserviceCallRecord(vin: e.vin, sequence: e.sequence, recordedAtMs: e.recordedAtMs, call: call.materialize()))

        case .chargeSession(let session):
            let state = consent.state(of: e.vin)
            guard state.chargingHistory && !state.accountDeleted else {
                prepared.tally.droppedForConsent["charging_history", default: 0] += 1
                return
            }
            // Stored under a keyed reference, the id itself and the position sealed.
            let sessionID = session.sessionID.string
            let reference = sessionReferences.reference(vin: e.vin, sessionID: sessionID)
            var sealed: [UInt8]?
            if state.chargingLocation, let position = session.position {
                sealed = try? sealer.seal(position, vin: e.vin, sessionID: reference)
            }
            let sealedID = try? sealer.sealSessionID(sessionID, vin: e.vin, reference: reference)
            prepared.store.chargeSessions.append(ChargeSessionRecord(
                vin: e.vin, sessionID: reference, sequence: e.sequence, recordedAtMs: e.recordedAtMs,
                startedAtMs: session.startedAtMs, endedAtMs: session.endedAtMs,
                socStartPermille: session.socStartPermille, socEndPermille: session.socEndPermille,
                energyWh: session.energyWh, maxPowerW: session.maxPowerW,
                current: session.current.rawValue, site: session.site.rawValue, endReason: session.endReason.rawValue,
                sealedPosition: sealed, keyID: sealed == nil && sealedID == nil ? nil : sealer.keyID, sealedSessionID: sealedID))

        case .rttiProbe(let probe):
            guard consent.state(of: e.vin).rtti else {
                prepared.tally.droppedForConsent["rtti", default: 0] += 1
                return
            }
            // The VIN stops here: only the pseudonym goes on.
            let pseudonym = pseudonyms.pseudonym(of: e.vin, atMs: e.recordedAtMs)
            prepared.store.appendProbe(pseudonym: pseudonym, sequence: e.sequence, points: probe.points)
            var hazards = probe.hazards.makeIterator()
            guard let firstHazard = hazards.next() else { return }
            // Hazards are rare: the points are walked again for them.
            let points = Array(probe.points)
            var hazard: Hazard? = firstHazard
            while let h = hazard {
                let p = points[Int(h.pointIndex)]
                let report = HazardReport(
                    pseudonym: pseudonym, type: h.type.description, tMs: p.tMs, latE7: p.latE7, lonE7: p.lonE7,
                    speedDkmh: p.speedDkmh, headingDeg: p.headingDeg, tile: RoadTile.id(latE7: p.latE7, lonE7: p.lonE7))
                prepared.outputs.append(KafkaProducerMessage(topic: topics.probes, key: Array(pseudonym.utf8), value: report.json))
                prepared.tally.hazards += 1
                hazard = hazards.next()
            }
        }
    }
}
