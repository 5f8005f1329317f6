import CRdKafka
import Foundation
import Synchronization

/// A record header: a name and a value (nil for a null value).
public struct KafkaHeader: Sendable, Hashable {
    /// The header name.
    public var name: String
    /// The value bytes; nil is Kafka's null header value.
    public var value: [UInt8]?
    /// A header with raw bytes.
    public init(name: String, value: [UInt8]?) {
        self.name = name
        self.value = value
    }
    /// A header with a UTF-8 text value.
    public init(name: String, text: String) {
        self.init(name: name, value: Array(text.utf8))
    }
}

/// One record to produce, owned (the batch API). The streaming
/// ``KafkaProducer/enqueue(topic:partition:key:value:headers:into:)`` takes
/// borrowed bytes instead.
public struct KafkaProducerMessage: Sendable {
    /// The topic.
    public var topic: String
    /// The partition, or nil to let the key choose (librdkafka's default partitioner).
    public var partition: Int32?
    /// The key, or nil for none.
    public var key: [UInt8]?
    /// The value.
    public var value: [UInt8]
    /// Headers, in order.
    public var headers: [KafkaHeader]
    /// A record for `topic`.
    public init(topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// What the cluster said about one record.
public struct KafkaDeliveryReport: Sendable {
    /// The record's position in its ``KafkaDeliveries`` group (enqueue order, from 0).
    public var index: Int
    /// The topic.
    public var topic: String
    /// The partition written to (-1 when none was chosen).
    public var partition: Int32
    /// The record's offset (-1 when it failed or is unknown).
    public var offset: Int64
    /// Why it failed; nil when the record is durable (acknowledged by all in-sync replicas).
    public var error: KafkaError?
}

/// The outcome of a group of records once every one has a delivery report.
public struct KafkaDeliverySummary: Sendable {
    /// Records enqueued in the group.
    public var enqueued: Int
    /// Records acknowledged.
    public var delivered: Int
    /// Reports of the records that failed, in enqueue order.
    public var failures: [KafkaDeliveryReport]
    /// Records with no report because the producer was destroyed first.
    public var unreported: Int
    /// Every report in enqueue order, when the group was made with `collectReports`.
    public var reports: [KafkaDeliveryReport]

    /// Whether every record is durable.
    public var allDelivered: Bool { delivered == enqueued }

    /// The first failure as an error naming how many failed, nil when all were delivered.
    public var error: KafkaError? {
        if let first = failures.first, let error = first.error {
            return KafkaError(
                error.code, message: error.message,
                context: "\(failures.count + unreported) of \(enqueued) records not delivered; first: record \(first.index) to \(first.topic)",
                isRetriable: error.isRetriable, isFatal: error.isFatal)
        }
        if unreported > 0 {
            return KafkaError(.destroyed, context: "\(unreported) of \(enqueued) records had no delivery report (producer closed)")
        }
        return nil
    }
}

/// A group of records whose deliveries are awaited together (for example
/// one input batch, or one whole capture file). Cheap to make; awaiting it
/// with ``wait()`` closes it to further records.
public struct KafkaDeliveries: Sendable {
    let id: UInt32
    let state: ProducerState

    /// Records enqueued into the group so far.
    public var enqueued: Int { state.groups.withLock { $0.groups[id]?.enqueued ?? 0 } }

    /// Waits until every record of the group has its delivery report (durable or failed).
    public func wait() async -> KafkaDeliverySummary {
        await withCheckedContinuation { continuation in
            let ready: KafkaDeliverySummary? = state.groups.withLock { s in
                guard var group = s.groups[id] else {
                    return KafkaDeliverySummary(enqueued: 0, delivered: 0, failures: [], unreported: 0, reports: [])
                }
                group.sealed = true
                if group.done == group.enqueued || s.destroyed {
                    s.groups[id] = nil
                    return group.summary(unreported: group.enqueued - group.done)
                }
                group.waiter = continuation
                s.groups[id] = group
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// Book-keeping of one ``KafkaDeliveries`` group.
struct DeliveryGroup {
    var enqueued = 0
    var done = 0
    var delivered = 0
    var failures: [KafkaDeliveryReport] = []
    var reports: [KafkaDeliveryReport]?
    var sealed = false
    var waiter: CheckedContinuation<KafkaDeliverySummary, Never>?

    func summary(unreported: Int) -> KafkaDeliverySummary {
        KafkaDeliverySummary(
            enqueued: enqueued, delivered: delivered, failures: failures.sorted { $0.index < $1.index },
            unreported: unreported, reports: (reports ?? []).sorted { $0.index < $1.index })
    }
}

/// State shared by the producer, its poll thread and librdkafka's callbacks
/// (the `opaque` of the client). Outlives the `rd_kafka_t`.
final class ProducerState: Sendable {
    struct Groups {
        var groups: [UInt32: DeliveryGroup] = [:]
        var nextID: UInt32 = 1
        var spaceWaiters: [CheckedContinuation<Void, Never>] = []
        var destroyed = false
        var fatal: KafkaError?
        var lastError: KafkaError?
        var statistics: KafkaStatistics?
    }
    let groups = Mutex(Groups())
    let stopPolling = Atomic<Bool>(false)
    let pollThreadDone = DispatchSemaphore(value: 0)

    /// A report for one record from librdkafka's delivery callback.
    func delivered(_ message: UnsafePointer<rd_kafka_message_t>) {
        let bits = UInt(bitPattern: message.pointee._private)
        let id = UInt32(truncatingIfNeeded: bits >> 32)
        let index = Int(UInt32(truncatingIfNeeded: bits))
        let err = message.pointee.err
        let waiter: (CheckedContinuation<KafkaDeliverySummary, Never>, KafkaDeliverySummary)? = groups.withLock { s in
            // The group is changed where it lies in the dictionary: a copy
            // taken out and written back costs a lookup, a retain and a
            // release of its arrays per record.
            guard let slot = s.groups.index(forKey: id) else { return nil }
            s.groups.values[slot].done += 1
            // Strings are made only for failures and collected reports, not per durable record.
            if err != RD_KAFKA_RESP_ERR_NO_ERROR || s.groups.values[slot].reports != nil {
                let topic = message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
                var report = KafkaDeliveryReport(
                    index: index, topic: topic, partition: message.pointee.partition, offset: message.pointee.offset, error: nil)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    report.offset = -1
                    report.error = KafkaError(
                        err, context: "delivery to \(topic)[\(message.pointee.partition)]")
                    s.groups.values[slot].failures.append(report)
                } else {
                    s.groups.values[slot].delivered += 1
                }
                s.groups.values[slot].reports?.append(report)
            } else {
                s.groups.values[slot].delivered += 1
            }
            let group = s.groups.values[slot]
            if group.sealed && group.done == group.enqueued, let waiter = group.waiter {
                s.groups.remove(at: slot)
                return (waiter, group.summary(unreported: 0))
            }
            return nil
        }
        if let (continuation, summary) = waiter { continuation.resume(returning: summary) }
    }

    /// Wakes every task waiting for room in the local queue.
    func wakeSpaceWaiters() {
        let waiters = groups.withLock { s in
            let w = s.spaceWaiters
            s.spaceWaiters.removeAll()
            return w
        }
        for w in waiters { w.resume() }
    }

    /// Ends every wait: called once the client is gone, so no report can come any more.
    func finish() {
        let pending = groups.withLock { s in
            s.destroyed = true
            var out: [(CheckedContinuation<KafkaDeliverySummary, Never>, KafkaDeliverySummary)] = []
            for (id, group) in s.groups where group.waiter != nil {
                out.append((group.waiter!, group.summary(unreported: group.enqueued - group.done)))
                s.groups[id] = nil
            }
            return out
        }
        for (continuation, summary) in pending { continuation.resume(returning: summary) }
        wakeSpaceWaiters()
    }
}

/// An idempotent Kafka producer: records are enqueued without blocking,
/// batched and compressed by librdkafka, and each has a delivery report the
/// caller can await (per group of records), so nothing is lost silently.
///
/// A dedicated thread serves delivery reports (`rd_kafka_poll`); flushing
/// runs on another. Thread-safe: enqueue from any task or thread.
public final class KafkaProducer: @unchecked Sendable {
    // rd_kafka_t is thread-safe for everything used here; immutable after init.
    private let handle: OpaquePointer
    let state: ProducerState
    private let blocking = BlockingThread(name: "kafka-producer-flush")
    private let closed = Atomic<Bool>(false)
    /// The configuration the producer was made with.
    public let configuration: KafkaProducerConfiguration

    /// Creates the producer; throws on an unknown property or a bad value.
    public init(configuration: KafkaProducerConfiguration) throws(KafkaError) {
        self.configuration = configuration
        let state = ProducerState()
        self.state = state
        let conf = try makeConf(configuration.librdkafkaProperties, context: "producer configuration")
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(state).toOpaque())
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, let opaque else { return }
            Unmanaged<ProducerState>.fromOpaque(opaque).takeUnretainedValue().delivered(message)
        }
        rd_kafka_conf_set_error_cb(conf) { rk, err, reason, opaque in
            guard let opaque else { return }
            let state = Unmanaged<ProducerState>.fromOpaque(opaque).takeUnretainedValue()
            var error = KafkaError(KafkaError.Code(rawValue: err), message: reason.map { String(cString: $0) }, context: "producer")
            if err == RD_KAFKA_RESP_ERR__FATAL.rawValue, let rk {
                // The original error behind a fatal one (e.g. an idempotence violation).
                let (code, text) = withErrorBuffer { buffer, size in rd_kafka_fatal_error(rk, buffer, size) }
                error = KafkaError(KafkaError.Code(code), message: text, context: "producer (fatal)", isFatal: true)
            }
            state.groups.withLock {
                $0.lastError = error
                if error.isFatal { $0.fatal = error }
            }
        }
        rd_kafka_conf_set_stats_cb(conf) { _, json, length, opaque in
            guard let opaque, let json else { return 0 }
            let state = Unmanaged<ProducerState>.fromOpaque(opaque).takeUnretainedValue()
            if let stats = KafkaStatistics(json: UnsafeRawBufferPointer(start: json, count: length)) {
                state.groups.withLock { $0.statistics = stats }
            }
            return 0  // librdkafka frees the JSON
        }
        handle = try makeClient(RD_KAFKA_PRODUCER, conf: conf, context: "producer")

        // The poll thread: serves delivery reports and callbacks until close.
        let rk = SendableHandle(handle)
        let thread = Thread {
            while !state.stopPolling.load(ordering: .relaxed) {
                rd_kafka_poll(rk.raw, 50)
                state.wakeSpaceWaiters()
            }
            state.pollThreadDone.signal()
        }
        thread.name = "kafka-producer-poll"
        thread.start()
    }

    deinit {
        if !closed.exchange(true, ordering: .acquiringAndReleasing) {
            shutDown()
        }
        blocking.stop()
    }

    private func shutDown() {
        state.stopPolling.store(true, ordering: .relaxed)
        state.pollThreadDone.wait()
        rd_kafka_destroy(handle)
        state.finish()
    }

    /// A new group for records whose deliveries are awaited together.
    /// With `collectReports`, the summary holds a report for every record
    /// (costs a String per record); otherwise only failures are kept.
    public func deliveries(collectReports: Bool = false) -> KafkaDeliveries {
        let id = state.groups.withLock { s in
            var id = s.nextID
            while id == 0 || s.groups[id] != nil { id &+= 1 }
            s.nextID = id &+ 1
            s.groups[id] = DeliveryGroup(reports: collectReports ? [] : nil)
            return id
        }
        return KafkaDeliveries(id: id, state: state)
    }

    /// Enqueues one record, copying `key`, `value` and headers (so the
    /// caller's buffers may be reused at once). Never blocks.
    ///
    /// - Returns: false when the local queue is full (nothing was enqueued):
    ///   await ``waitForQueueSpace()`` and try again.
    /// - Throws: ``KafkaError`` for anything else (unknown partition, a
    ///   record too large, a fatal producer error, a closed group).
    public func enqueue(
        topic: String, partition: Int32? = nil, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer,
        headers: [KafkaHeader] = [], into deliveries: KafkaDeliveries
    ) throws(KafkaError) -> Bool {
        let index: Int = try state.groups.withLock { s throws(KafkaError) in
            if let fatal = s.fatal { throw fatal }
            guard !s.destroyed else { throw KafkaError(.destroyed, context: "enqueue to \(topic)") }
            guard let slot = s.groups.index(forKey: deliveries.id), !s.groups.values[slot].sealed else {
                throw KafkaError(.state, message: "the delivery group is already awaited", context: "enqueue to \(topic)")
            }
            let index = s.groups.values[slot].enqueued
            s.groups.values[slot].enqueued += 1
            return index
        }
        guard index <= Int(UInt32.max) else { throw KafkaError(.invalidConfiguration, message: "more than 2^32 records in one delivery group", context: "enqueue") }
        let opaque = UnsafeMutableRawPointer(bitPattern: UInt(deliveries.id) << 32 | UInt(index))
        let error = produceva(topic: topic, partition: partition, key: key, value: value, headers: headers, opaque: opaque)
        guard let error else { return true }
        // Not enqueued: take the record back out of the group.
        state.groups.withLock { s in
            if let slot = s.groups.index(forKey: deliveries.id) { s.groups.values[slot].enqueued -= 1 }
        }
        let failure = KafkaError(consuming: error, context: "enqueue to \(topic)")
        if failure.code == .queueFull { return false }
        throw failure
    }

    private func produceva(
        topic: String, partition: Int32?, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer,
        headers: [KafkaHeader], opaque: UnsafeMutableRawPointer?
    ) -> OpaquePointer? {
        // Header names as C strings; kept alive across the call.
        let names = headers.map { ContiguousArray($0.name.utf8CString) }
        return topic.withCString { topicName in
            var values: [rd_kafka_vu_t] = []
            values.reserveCapacity(6 + headers.count)
            var v = rd_kafka_vu_t()
            v.vtype = RD_KAFKA_VTYPE_TOPIC
            v.u.cstr = topicName
            values.append(v)
            if let partition {
                v = rd_kafka_vu_t()
                v.vtype = RD_KAFKA_VTYPE_PARTITION
                v.u.i32 = partition
                values.append(v)
            }
            v = rd_kafka_vu_t()
            v.vtype = RD_KAFKA_VTYPE_VALUE
            v.u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
            v.u.mem.size = value.count
            values.append(v)
            if let key {
                v = rd_kafka_vu_t()
                v.vtype = RD_KAFKA_VTYPE_KEY
                v.u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress)
                v.u.mem.size = key.count
                values.append(v)
            }
            v = rd_kafka_vu_t()
            v.vtype = RD_KAFKA_VTYPE_OPAQUE
            v.u.ptr = opaque
            values.append(v)
            v = rd_kafka_vu_t()
            v.vtype = RD_KAFKA_VTYPE_MSGFLAGS
            v.u.i = RD_KAFKA_MSG_F_COPY
            values.append(v)
            return withHeaderValues(headers, names: names, index: 0, into: &values)
        }
    }

    /// Appends header entries (nesting the borrows of their bytes) and produces.
    private func withHeaderValues(
        _ headers: [KafkaHeader], names: [ContiguousArray<CChar>], index: Int, into values: inout [rd_kafka_vu_t]
    ) -> OpaquePointer? {
        if index == headers.count {
            return values.withUnsafeBufferPointer { rd_kafka_produceva(handle, $0.baseAddress, $0.count) }
        }
        return names[index].withUnsafeBufferPointer { name in
            func add(_ bytes: UnsafeRawBufferPointer?) -> OpaquePointer? {
                var v = rd_kafka_vu_t()
                v.vtype = RD_KAFKA_VTYPE_HEADER
                v.u.header.name = name.baseAddress
                v.u.header.val = bytes?.baseAddress
                v.u.header.size = bytes.map { $0.count } ?? -1
                values.append(v)
                return withHeaderValues(headers, names: names, index: index + 1, into: &values)
            }
            guard let value = headers[index].value else { return add(nil) }
            return value.withUnsafeBytes { add($0) }
        }
    }

    /// Returns once librdkafka has served delivery reports (room may have
    /// been freed in the local queue), or after at most about 50 ms.
    public func waitForQueueSpace() async {
        await withCheckedContinuation { continuation in
            let now = state.groups.withLock { s in
                if s.destroyed { return true }
                s.spaceWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Enqueues `messages` and returns every delivery report once the last
    /// one is in (in input order). Throws only when a record could not be
    /// enqueued at all; delivery failures are in the summary.
    public func deliver(_ messages: [KafkaProducerMessage]) async throws(KafkaError) -> KafkaDeliverySummary {
        let group = deliveries(collectReports: true)
        for message in messages {
            while true {
                let enqueued = try withOptionalBytes(message.value) { value throws(KafkaError) in
                    try withOptionalBytes(message.key) { key throws(KafkaError) in
                        try enqueue(topic: message.topic, partition: message.partition, key: key, value: value!, headers: message.headers, into: group)
                    }
                }
                if enqueued { break }
                await waitForQueueSpace()
            }
        }
        return await group.wait()
    }

    /// Enqueues `messages` and returns when every one is durable; throws the
    /// first failure (with the count of failures) otherwise.
    @discardableResult
    public func send(_ messages: [KafkaProducerMessage]) async throws(KafkaError) -> [KafkaDeliveryReport] {
        let summary = try await deliver(messages)
        if let error = summary.error { throw error }
        return summary.reports
    }

    /// Looks up `topics` (their partitions and leaders) and connects to the
    /// brokers now, so that the first record sent to them does not wait for
    /// that (with the idempotent producer's id, several hundred ms on a
    /// fresh client). Optional: sending works without it, only later.
    public func prepare(topics: [String], timeoutMs: Int32 = 10_000) async throws(KafkaError) {
        let rk = SendableHandle(handle)
        try await blocking.run { () throws(KafkaError) in
            for topic in topics {
                guard let rkt = rd_kafka_topic_new(rk.raw, topic, nil) else {
                    throw KafkaError(rd_kafka_last_error(), context: "prepare \(topic)")
                }
                defer { rd_kafka_topic_destroy(rkt) }
                var metadata: UnsafePointer<rd_kafka_metadata>?
                let err = rd_kafka_metadata(rk.raw, 0, rkt, &metadata, timeoutMs)
                if let metadata { rd_kafka_metadata_destroy(metadata) }
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "metadata of \(topic)") }
            }
        }
    }

    /// Waits (on a dedicated thread) until every enqueued record has its
    /// delivery report, or throws ``KafkaError/Code/timedOut`` after `timeoutMs`.
    public func flush(timeoutMs: Int32 = 30_000) async throws(KafkaError) {
        let rk = SendableHandle(handle)
        try await blocking.run { () throws(KafkaError) in
            let err = rd_kafka_flush(rk.raw, timeoutMs)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError(err, context: "flush: \(rd_kafka_outq_len(rk.raw)) records still waiting after \(timeoutMs) ms")
            }
        }
    }

    /// Flushes (up to `timeoutMs`) and destroys the client. Records still
    /// unacknowledged after the timeout are reported as unreported in their
    /// groups' summaries; the flush error is thrown after the client is gone.
    public func close(timeoutMs: Int32 = 30_000) async throws(KafkaError) {
        var flushError: KafkaError?
        do { try await flush(timeoutMs: timeoutMs) } catch { flushError = error }
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let done: Void = await withCheckedContinuation { continuation in
            blocking.submit { [self] in
                shutDown()
                continuation.resume()
            }
        }
        _ = done
        if let flushError { throw flushError }
    }

    /// Records enqueued but not yet acknowledged (`rd_kafka_outq_len`).
    public var pendingCount: Int { closed.load(ordering: .relaxed) ? 0 : Int(rd_kafka_outq_len(handle)) }

    /// The latest statistics snapshot (needs `statisticsIntervalMs` > 0).
    public var statistics: KafkaStatistics? { state.groups.withLock { $0.statistics } }

    /// The last client-level error librdkafka reported (e.g. all brokers down); informational.
    public var lastError: KafkaError? { state.groups.withLock { $0.lastError } }
}

/// Calls `body` with the bytes of `array`, or nil.
func withOptionalBytes<R, E: Error>(_ array: [UInt8]?, _ body: (UnsafeRawBufferPointer?) throws(E) -> R) throws(E) -> R {
    guard let array else { return try body(nil) }
    // withUnsafeBytes rethrows untyped; keep the typed error through a Result.
    let result: Result<R, E> = array.withUnsafeBytes { bytes in
        do throws(E) { return .success(try body(bytes)) } catch { return .failure(error) }
    }
    return try result.get()
}
