import CRdKafka
import Foundation
import Synchronization

/// What a consumer does when the group moves partitions.
///
/// Both hooks run synchronously on the consumer's poll thread, inside
/// librdkafka's rebalance callback, while the consumer's own batch of
/// records may still be in the caller's hands: they must be thread-safe
/// and quick.
public struct KafkaRebalanceHandler: Sendable {
    /// Called after partitions are assigned to this member.
    public var onAssign: @Sendable ([KafkaTopicPartition]) -> Void
    /// Called before partitions are taken away: return the offsets of the
    /// records finished on them; they are committed synchronously before the
    /// partitions are unassigned, so the next owner resumes right after them.
    /// Records fetched but not finished are read again by the next owner
    /// (at least once). A coordinator may refuse that commit (librdkafka
    /// 2.0.2's mock cluster does while another member is joining an eager
    /// group; Kafka accepts it): the refusal shows in
    /// ``KafkaConsumer/lastCommitError``, and the next owner then re-reads
    /// the finished records too, so commit finished work regularly rather
    /// than only here.
    public var onRevoke: @Sendable ([KafkaTopicPartition]) -> [KafkaProcessedOffset]

    /// Hooks; the defaults do nothing and commit nothing.
    public init(
        onAssign: @escaping @Sendable ([KafkaTopicPartition]) -> Void = { _ in },
        onRevoke: @escaping @Sendable ([KafkaTopicPartition]) -> [KafkaProcessedOffset] = { _ in [] }
    ) {
        self.onAssign = onAssign
        self.onRevoke = onRevoke
    }
}

/// State shared with librdkafka's callbacks (the client `opaque`).
final class ConsumerState: Sendable {
    struct Shared {
        var statistics: KafkaStatistics?
        var lastError: KafkaError?
        var lastCommitError: KafkaError?
        var commitsSucceeded = 0
        var commitsFailed = 0
        /// Commits acknowledged after a later one of a partition: see
        /// ``KafkaConsumer/commitsOvertaken``.
        var commitsOvertaken = 0
        /// The highest committed offset acknowledged per partition.
        var acknowledged: [KafkaTopicPartition: Int64] = [:]
        var assignment: [KafkaTopicPartition] = []
    }
    let shared = Mutex(Shared())
    let handler: KafkaRebalanceHandler
    init(handler: KafkaRebalanceHandler) { self.handler = handler }

    func rebalance(_ handle: OpaquePointer, _ err: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        let rk = SendableHandle(handle)
        let partitions = list.map(topicPartitions) ?? []
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk.raw)) == "COOPERATIVE"
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if cooperative {
                if let error = rd_kafka_incremental_assign(rk.raw, list) { record(KafkaError(consuming: error, context: "incremental assign")) }
            } else {
                let e = rd_kafka_assign(rk.raw, list)
                if e != RD_KAFKA_RESP_ERR_NO_ERROR { record(KafkaError(e, context: "assign")) }
            }
            shared.withLock { s in
                s.assignment = cooperative ? Array(Set(s.assignment).union(partitions)).sorted() : partitions.sorted()
            }
            handler.onAssign(partitions)
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            // Commit what the caller has finished before the partitions go,
            // unless the session was lost (then the commit would be refused).
            let offsets = handler.onRevoke(partitions)
            if !offsets.isEmpty && rd_kafka_assignment_lost(rk.raw) == 0 {
                let commitList = makePartitionList(offsets)
                let e = rd_kafka_commit(rk.raw, commitList, 0)
                noteCommit(commitError(e, commitList, context: "commit on revoke of \(partitions.count) partitions"),
                           e == RD_KAFKA_RESP_ERR_NO_ERROR ? commitList : nil)
                rd_kafka_topic_partition_list_destroy(commitList)
            }
            if cooperative {
                if let error = rd_kafka_incremental_unassign(rk.raw, list) { record(KafkaError(consuming: error, context: "incremental unassign")) }
            } else {
                let e = rd_kafka_assign(rk.raw, nil)
                if e != RD_KAFKA_RESP_ERR_NO_ERROR { record(KafkaError(e, context: "unassign")) }
            }
            shared.withLock { s in
                s.assignment = cooperative ? s.assignment.filter { !partitions.contains($0) } : []
                // Their next owner commits them; ours are compared afresh if they come back.
                for p in partitions { s.acknowledged[p] = nil }
            }
        default:
            // librdkafka's documented fallback: drop the assignment on any other error.
            record(KafkaError(err, context: "rebalance"))
            _ = rd_kafka_assign(rk.raw, nil)
            shared.withLock { $0.assignment = [] }
        }
    }

    func record(_ error: KafkaError) { shared.withLock { $0.lastError = error } }

    /// Counts a commit's outcome; `list` (its offsets, with librdkafka's
    /// per-partition errors) tells an acknowledgement that came after a
    /// later commit's, which set the group's offsets back.
    func noteCommit(_ error: KafkaError?, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        let accepted = list.map(acceptedOffsets) ?? []
        shared.withLock { s in
            if let error {
                s.commitsFailed += 1
                s.lastCommitError = error
            } else {
                s.commitsSucceeded += 1
            }
            var overtaken = false
            for (partition, offset) in accepted {
                if let later = s.acknowledged[partition], later > offset {
                    overtaken = true
                } else {
                    s.acknowledged[partition] = offset
                }
            }
            if overtaken { s.commitsOvertaken += 1 }
        }
    }
}

/// The librdkafka client of a ``KafkaConsumer``, shared with every batch it
/// hands out: `rd_kafka_destroy` blocks until all fetched messages are
/// destroyed, so the handle is destroyed only when the consumer and its last
/// batch are gone, on a thread of its own (never the releasing caller's).
final class ConsumerClient: @unchecked Sendable {
    // Thread-safe librdkafka handles, immutable; `state` outlives them
    // because their callbacks reach it through an unretained pointer.
    let handle: OpaquePointer
    let queue: OpaquePointer
    let state: ConsumerState

    init(handle: OpaquePointer, queue: OpaquePointer, state: ConsumerState) {
        self.handle = handle
        self.queue = queue
        self.state = state
    }

    deinit {
        let rk = SendableHandle(handle)
        let rkqu = SendableHandle(queue)
        let state = self.state
        let thread = Thread {
            rd_kafka_queue_destroy(rkqu.raw)
            rd_kafka_destroy(rk.raw)
            withExtendedLifetime(state) {}
        }
        thread.name = "kafka-consumer-destroy"
        thread.start()
    }
}

/// A member of a consumer group that reads batches of records without
/// copying them and commits only the offsets the caller says are finished
/// (auto commit and auto offset store are off), so a crash re-reads
/// unfinished records instead of losing them.
///
/// Polls run on a dedicated thread and synchronous commits on another, so
/// neither blocks Swift's cooperative pool nor waits for the other.
/// Call ``close()`` when done (it commits through the revoke hook and leaves
/// the group cleanly).
public final class KafkaConsumer: @unchecked Sendable {
    // rd_kafka_t and its queue are thread-safe; `closed` stops their use,
    // `client` (shared with held batches) their destruction.
    private let client: ConsumerClient
    private var handle: OpaquePointer { client.handle }
    private var queue: OpaquePointer { client.queue }
    private var state: ConsumerState { client.state }
    private let pollThread = BlockingThread(name: "kafka-consumer-poll")
    private let commitThread = BlockingThread(name: "kafka-consumer-commit")
    private let closed = Atomic<Bool>(false)
    /// The configuration the consumer was made with.
    public let configuration: KafkaConsumerConfiguration

    /// Creates the group member (it joins on ``subscribe(_:)``).
    public init(configuration: KafkaConsumerConfiguration, rebalance: KafkaRebalanceHandler = KafkaRebalanceHandler()) throws(KafkaError) {
        self.configuration = configuration
        let state = ConsumerState(handler: rebalance)
        let conf = try makeConf(configuration.librdkafkaProperties, context: "consumer configuration")
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(state).toOpaque())
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, list, opaque in
            guard let rk, let opaque else { return }
            Unmanaged<ConsumerState>.fromOpaque(opaque).takeUnretainedValue().rebalance(rk, err, list)
        }
        rd_kafka_conf_set_error_cb(conf) { _, err, reason, opaque in
            guard let opaque else { return }
            Unmanaged<ConsumerState>.fromOpaque(opaque).takeUnretainedValue().record(
                KafkaError(KafkaError.Code(rawValue: err), message: reason.map { String(cString: $0) }, context: "consumer"))
        }
        rd_kafka_conf_set_stats_cb(conf) { _, json, length, opaque in
            guard let opaque, let json else { return 0 }
            if let stats = KafkaStatistics(json: UnsafeRawBufferPointer(start: json, count: length)) {
                Unmanaged<ConsumerState>.fromOpaque(opaque).takeUnretainedValue().shared.withLock { $0.statistics = stats }
            }
            return 0
        }
        let handle = try makeClient(RD_KAFKA_CONSUMER, conf: conf, context: "consumer")
        // One queue for records, rebalances, errors and statistics: the poll thread serves them all.
        rd_kafka_poll_set_consumer(handle)
        client = ConsumerClient(handle: handle, queue: rd_kafka_queue_get_consumer(handle), state: state)
    }

    deinit {
        if !closed.exchange(true, ordering: .acquiringAndReleasing) {
            // Safety net only: close() is the clean way (this blocks the releasing thread).
            rd_kafka_consumer_close(handle)
        }
        pollThread.stop()
        commitThread.stop()
    }

    private func checkOpen(_ operation: String) throws(KafkaError) {
        if closed.load(ordering: .acquiring) { throw KafkaError(.destroyed, context: operation) }
    }

    /// Joins the group for `topics` (replacing an earlier subscription).
    public func subscribe(_ topics: [String]) throws(KafkaError) {
        try checkOpen("subscribe")
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics { rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA) }
        let err = rd_kafka_subscribe(handle, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "subscribe to \(topics.joined(separator: ","))") }
    }

    /// Up to `maxRecords` records, waiting at most `timeoutMs` for them
    /// (fewer, or none, when the time runs out). Rebalance hooks and
    /// statistics run during polls, on the poll thread.
    ///
    /// Consumer errors (a broker down, an offset out of range) come in the
    /// batch's ``KafkaMessageBatch/errors``; only a closed or fatally failed
    /// consumer throws.
    public func poll(maxRecords: Int? = nil, timeoutMs: Int? = nil) async throws(KafkaError) -> KafkaMessageBatch {
        let size = max(1, maxRecords ?? configuration.batchSize)
        let timeout = Int32(clamping: timeoutMs ?? configuration.batchTimeoutMs)
        let rkqu = SendableHandle(queue)
        let client = self.client
        return try await pollThread.run { [self] () throws(KafkaError) in
            if self.closed.load(ordering: .acquiring) { throw KafkaError(.destroyed, context: "poll") }
            let buffer = UnsafeMutableBufferPointer<UnsafeMutablePointer<rd_kafka_message_t>?>.allocate(capacity: size)
            let n = rd_kafka_consume_batch_queue(rkqu.raw, timeout, buffer.baseAddress, size)
            guard n > 0 else {
                buffer.deallocate()
                if n < 0 { throw KafkaError(rd_kafka_last_error(), context: "poll") }
                return .empty()
            }
            // Split records from error events; errors are copied out and their messages destroyed.
            var kept = 0
            var errors: [KafkaError] = []
            for i in 0..<n {
                guard let message = buffer[i] else { continue }
                if message.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    let topic = message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "-"
                    var text: String?
                    if let payload = message.pointee.payload {
                        text = String(decoding: UnsafeRawBufferPointer(start: payload, count: message.pointee.len), as: UTF8.self)
                    }
                    errors.append(KafkaError(
                        KafkaError.Code(message.pointee.err), message: text,
                        context: "consume \(topic)[\(message.pointee.partition)]@\(message.pointee.offset)"))
                    rd_kafka_message_destroy(message)
                } else {
                    buffer[kept] = message
                    kept += 1
                }
            }
            let records = UnsafeMutableBufferPointer<UnsafeMutablePointer<rd_kafka_message_t>>.allocate(capacity: kept)
            for i in 0..<kept { records[i] = buffer[i]! }
            buffer.deallocate()
            return KafkaMessageBatch(messages: records, errors: errors, owner: client)
        }
    }

    /// Commits `offsets` (each stored as `offset + 1`) and returns once the
    /// group coordinator has accepted them.
    public func commit(_ offsets: [KafkaProcessedOffset]) async throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        try checkOpen("commit")
        let rk = SendableHandle(handle)
        let state = self.state
        try await commitThread.run { () throws(KafkaError) in
            let list = makePartitionList(offsets)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_commit(rk.raw, list, 0)
            let error = commitError(err, list, context: "commit of \(offsets.count) offsets")
            state.noteCommit(error, err == RD_KAFKA_RESP_ERR_NO_ERROR ? list : nil)
            if let error { throw error }
        }
    }

    /// Starts committing `offsets` (each stored as `offset + 1`) without
    /// waiting: the request goes out at once, and its outcome shows in
    /// ``commitCounts`` and ``lastCommitError`` after a later ``poll(maxRecords:timeoutMs:)``
    /// (which serves the result). A refused commit is not retried: commit
    /// the same or later offsets again, or rely on the revoke hook.
    public func commitInBackground(_ offsets: [KafkaProcessedOffset]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        try checkOpen("commit")
        let list = makePartitionList(offsets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        // The result comes back on the consumer queue with this call's own
        // callback, so only background commits are counted there.
        let err = rd_kafka_commit_queue(handle, list, queue, { _, err, list, opaque in
            guard let opaque else { return }
            let state = Unmanaged<ConsumerState>.fromOpaque(opaque).takeUnretainedValue()
            state.noteCommit(commitError(err, list, context: "background commit"), err == RD_KAFKA_RESP_ERR_NO_ERROR ? list : nil)
        }, Unmanaged.passUnretained(state).toOpaque())
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "background commit") }
    }

    /// Stops handing out records of `partitions` until ``resume(_:)``; for
    /// back-pressure from a slow store. Batches already returned stay valid;
    /// records prefetched but not yet polled are dropped from the client's
    /// queue and fetched again after ``resume(_:)``, from the record after
    /// the last one polled, so none is lost or repeated.
    public func pause(_ partitions: [KafkaTopicPartition]) throws(KafkaError) {
        try checkOpen("pause")
        try pauseResume(partitions, pause: true)
    }

    /// Fetches from `partitions` again.
    public func resume(_ partitions: [KafkaTopicPartition]) throws(KafkaError) {
        try checkOpen("resume")
        try pauseResume(partitions, pause: false)
    }

    private func pauseResume(_ partitions: [KafkaTopicPartition], pause: Bool) throws(KafkaError) {
        let list = makePartitionList(partitions.map { KafkaProcessedOffset(topic: $0.topic, partition: $0.partition, offset: -2) }, exact: true)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = pause ? rd_kafka_pause_partitions(handle, list) : rd_kafka_resume_partitions(handle, list)
        let what = pause ? "pause" : "resume"
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: what) }
        if let failed = partitionErrors(list).first { throw KafkaError(failed.1, context: "\(what) \(failed.0)") }
    }

    /// The partitions assigned to this member, as of the last rebalance.
    public var assignment: [KafkaTopicPartition] { state.shared.withLock { $0.assignment } }

    /// The group's committed offsets ("next record to read") of `partitions`
    /// from the coordinator; -1001 (`RD_KAFKA_OFFSET_INVALID`) for none.
    public func committed(_ partitions: [KafkaTopicPartition], timeoutMs: Int32 = 10_000) async throws(KafkaError) -> [KafkaTopicPartition: Int64] {
        try checkOpen("committed")
        let rk = SendableHandle(handle)
        return try await commitThread.run { () throws(KafkaError) in
            let list = makePartitionList(partitions.map { KafkaProcessedOffset(topic: $0.topic, partition: $0.partition, offset: -2) }, exact: true)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_committed(rk.raw, list, timeoutMs)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "committed offsets") }
            var out: [KafkaTopicPartition: Int64] = [:]
            for e in elements(list) { out[KafkaTopicPartition(e)] = e.offset }
            return out
        }
    }

    /// The low and high watermarks of a partition, asked of its leader.
    public func watermarks(_ partition: KafkaTopicPartition, timeoutMs: Int32 = 10_000) async throws(KafkaError) -> (low: Int64, high: Int64) {
        try checkOpen("watermarks")
        let rk = SendableHandle(handle)
        let (low, high) = try await commitThread.run { () throws(KafkaError) -> (Int64, Int64) in
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_query_watermark_offsets(rk.raw, partition.topic, partition.partition, &low, &high, timeoutMs)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "watermarks of \(partition)") }
            return (low, high)
        }
        return (low, high)
    }

    /// The low and high watermarks of a partition as the client last saw
    /// them in a fetch response, without a round trip; nil before the first.
    public func cachedWatermarks(_ partition: KafkaTopicPartition) -> (low: Int64, high: Int64)? {
        guard !closed.load(ordering: .acquiring) else { return nil }
        var low: Int64 = 0
        var high: Int64 = 0
        let err = rd_kafka_get_watermark_offsets(handle, partition.topic, partition.partition, &low, &high)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { return nil }
        return (max(low, 0), high)
    }

    /// The group's lag on `partitions` (default: the current assignment):
    /// high watermark minus committed offset (minus the low watermark when
    /// nothing is committed).
    ///
    /// With `fresh`, every partition's watermarks are asked of its leader:
    /// one round trip per partition, on the thread that also makes
    /// synchronous commits, so a few hundred partitions take a while (and
    /// hold a revoke's commit back meanwhile). Without it, the watermarks
    /// the fetches brought are used, and only partitions not fetched yet are
    /// asked: what a periodic figure (a status line, a gauge) wants.
    public func lag(of partitions: [KafkaTopicPartition]? = nil, fresh: Bool = true) async throws(KafkaError) -> [KafkaTopicPartition: Int64] {
        let partitions = partitions ?? assignment
        let committed = try await committed(partitions)
        var lag: [KafkaTopicPartition: Int64] = [:]
        for p in partitions {
            let cached = fresh ? nil : cachedWatermarks(p)
            let (low, high) = if let cached { cached } else { try await watermarks(p) }
            let position = committed[p].flatMap { $0 >= 0 ? $0 : nil } ?? low
            lag[p] = max(0, high - position)
        }
        return lag
    }

    /// The latest statistics snapshot (needs `statisticsIntervalMs` > 0).
    public var statistics: KafkaStatistics? { state.shared.withLock { $0.statistics } }
    /// The last client-level error librdkafka reported; informational.
    public var lastError: KafkaError? { state.shared.withLock { $0.lastError } }
    /// The last failed commit, synchronous or in the background.
    public var lastCommitError: KafkaError? { state.shared.withLock { $0.lastCommitError } }
    /// Commits that succeeded and failed so far.
    public var commitCounts: (succeeded: Int, failed: Int) { state.shared.withLock { ($0.commitsSucceeded, $0.commitsFailed) } }

    /// Commits acknowledged after a later commit of the same partition had
    /// been: the group's offset then is the older one. librdkafka retries a
    /// commit the coordinator answered with a retriable error (request timed
    /// out, coordinator moved or loading) after `retry.backoff.ms`, and by
    /// then a later commit may have gone out and been accepted; the retry
    /// then sets the offset back, and both report success. Commit the
    /// finished offsets again when this grows.
    public var commitsOvertaken: Int { state.shared.withLock { $0.commitsOvertaken } }

    /// Leaves the group (the revoke hook runs and its offsets are committed);
    /// every other call throws afterwards. Batches still held stay valid:
    /// the client is destroyed once the consumer and the last of them are
    /// released (librdkafka cannot destroy it earlier).
    ///
    /// Returns after `timeout` at the latest, recording an error: librdkafka
    /// 2.0.2's close was seen to hang in the revoke's unassign when members
    /// left during a rebalance (the multi-instance test, once). Whoever
    /// closes has committed what it finished before, so a shutdown may go on;
    /// the group notices the member gone at its session timeout.
    public func close(timeout: Duration = .seconds(20)) async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let rk = SendableHandle(handle)
        let state = self.state
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = OnceResumer(continuation)
            pollThread.submit {
                rd_kafka_consumer_close(rk.raw)
                once.resume()
            }
            let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
                // Only when the close had not returned first.
                if once.resume() {
                    state.record(KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, context: "consumer close did not finish within \(timeout); left behind"))
                }
            }
        }
    }
}

/// A librdkafka partition list of `offsets`; the stored offset is `offset + 1`
/// unless `exact`. The caller destroys it.
func makePartitionList(_ offsets: [KafkaProcessedOffset], exact: Bool = false) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
    let list = rd_kafka_topic_partition_list_new(Int32(max(1, offsets.count)))!
    for o in offsets {
        let element = rd_kafka_topic_partition_list_add(list, o.topic, o.partition)!
        element.pointee.offset = exact ? o.offset : o.offset + 1
    }
    return list
}

/// The elements of a librdkafka list, valid while the list is.
func elements(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> UnsafeBufferPointer<rd_kafka_topic_partition_t> {
    UnsafeBufferPointer(start: list.pointee.elems, count: Int(list.pointee.cnt))
}

extension KafkaTopicPartition {
    /// The topic and partition of a librdkafka list element.
    init(_ element: rd_kafka_topic_partition_t) {
        self.init(topic: String(cString: element.topic), partition: element.partition)
    }
}

/// The partitions of a librdkafka list.
func topicPartitions(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [KafkaTopicPartition] {
    elements(list).map(KafkaTopicPartition.init)
}

/// The failure of a commit: the request's error, else the first
/// partition-level one (e.g. a partition no longer in the group); nil when
/// every offset was accepted.
func commitError(_ err: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, context: String) -> KafkaError? {
    if err != RD_KAFKA_RESP_ERR_NO_ERROR { return KafkaError(err, context: context) }
    if let list, let failed = partitionErrors(list).first { return KafkaError(failed.1, context: "\(context): \(failed.0)") }
    return nil
}

/// The offsets of a librdkafka list that carry no error (none negative).
func acceptedOffsets(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [(KafkaTopicPartition, Int64)] {
    elements(list).compactMap { $0.err == RD_KAFKA_RESP_ERR_NO_ERROR && $0.offset >= 0 ? (KafkaTopicPartition($0), $0.offset) : nil }
}

/// The per-partition errors of a librdkafka list.
func partitionErrors(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [(KafkaTopicPartition, rd_kafka_resp_err_t)] {
    elements(list).compactMap { $0.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : (KafkaTopicPartition($0), $0.err) }
}

/// Resumes a continuation once, whichever of several callers comes first.
final class OnceResumer: Sendable {
    private let continuation: Mutex<CheckedContinuation<Void, Never>?>
    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = Mutex(continuation) }
    /// Resumes it if nobody did; whether this call did.
    @discardableResult
    func resume() -> Bool {
        continuation.withLock { c in
            guard let pending = c else { return false }
            pending.resume()
            c = nil
            return true
        }
    }
}
