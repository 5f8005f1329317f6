import CRdKafka
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Records from one consumer poll, held as librdkafka's own messages: keys
/// and values are read in place (no copy) through ``KafkaRecord`` views,
/// which are valid only until ``release()`` (or until the batch is
/// deinitialised), when the messages are handed back to librdkafka.
///
/// Keep the batch alive for as long as any view of it is used; release it
/// promptly, because librdkafka's fetch memory (`queued.max.messages.kbytes`)
/// is not reused while it is held.
public final class KafkaMessageBatch: @unchecked Sendable, RandomAccessCollection {
    // Immutable after init; release is made once-only by `released`.
    private let messages: UnsafeMutableBufferPointer<UnsafeMutablePointer<rd_kafka_message_t>>
    private let released = Atomic<Bool>(false)
    // The client the messages came from, kept alive until they are handed
    // back (librdkafka cannot destroy a client with messages outstanding);
    // written once, by the one release() that wins `released`.
    private var owner: AnyObject?
    /// Consumer errors that arrived in place of records in this poll
    /// (broker down, offset out of range...), with topic, partition and offset.
    public let errors: [KafkaError]

    init(messages: UnsafeMutableBufferPointer<UnsafeMutablePointer<rd_kafka_message_t>>, errors: [KafkaError], owner: AnyObject? = nil) {
        self.messages = messages
        self.errors = errors
        self.owner = messages.isEmpty ? nil : owner
    }

    /// An empty batch.
    static func empty(errors: [KafkaError] = []) -> KafkaMessageBatch {
        KafkaMessageBatch(messages: .init(start: nil, count: 0), errors: errors)
    }

    deinit { release() }

    /// Hands the messages back to librdkafka; every view of the batch is
    /// invalid afterwards. Calling it again does nothing.
    public func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for message in messages { rd_kafka_message_destroy(message) }
        messages.deallocate()
        owner = nil
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { messages.count }

    /// The record at `position`; a view into the batch.
    public subscript(position: Int) -> KafkaRecord {
        precondition(!released.load(ordering: .relaxed), "KafkaMessageBatch used after release()")
        return KafkaRecord(message: messages[position])
    }
}

/// One consumed record, read in place from librdkafka's message: valid
/// only while its ``KafkaMessageBatch`` is not released.
public struct KafkaRecord {
    let message: UnsafeMutablePointer<rd_kafka_message_t>

    /// The partition.
    public var partition: Int32 { message.pointee.partition }
    /// The record's offset in its partition.
    public var offset: Int64 { message.pointee.offset }

    /// The topic name (allocates a String: read it once per run of records).
    public var topic: String {
        message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
    }

    /// Calls `body` with the topic name's bytes, without allocating.
    public func withTopicName<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        guard let rkt = message.pointee.rkt, let name = rd_kafka_topic_name(rkt) else {
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        return try body(UnsafeRawBufferPointer(start: name, count: strlen(name)))
    }

    /// The key bytes, nil for a null key.
    public var key: UnsafeRawBufferPointer? {
        guard let key = message.pointee.key else { return nil }
        return UnsafeRawBufferPointer(start: key, count: message.pointee.key_len)
    }

    /// The value bytes (empty for a null value).
    public var value: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: message.pointee.payload, count: message.pointee.payload != nil ? message.pointee.len : 0)
    }

    /// The record timestamp in milliseconds since the epoch, when it has one.
    public var timestampMs: Int64? {
        var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let ts = rd_kafka_message_timestamp(message, &type)
        return type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : ts
    }

    /// The value of the last header called `name`, nil when absent; `.some(nil)`
    /// for a header with a null value. A view, like the record.
    public func header(named name: String) -> UnsafeRawBufferPointer?? {
        var headers: OpaquePointer?
        guard rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR, let headers else { return nil }
        var value: UnsafeRawPointer?
        var size = 0
        guard rd_kafka_header_get_last(headers, name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        guard let value else { return .some(nil) }
        return .some(UnsafeRawBufferPointer(start: value, count: size))
    }

    /// Every header, copied (for the dead-letter path and tests, not the hot path).
    public var headers: [KafkaHeader] {
        var headers: OpaquePointer?
        guard rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR, let headers else { return [] }
        var out: [KafkaHeader] = []
        var index = 0
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while rd_kafka_header_get_all(headers, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            out.append(KafkaHeader(
                name: name.map { String(cString: $0) } ?? "",
                value: value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }))
            index += 1
        }
        return out
    }

    /// This record as finished work, for ``KafkaConsumer/commit(_:)``.
    public var processed: KafkaProcessedOffset {
        KafkaProcessedOffset(topic: topic, partition: partition, offset: offset)
    }
}

/// The offset of the last record a caller has finished on a partition.
/// Committing it stores `offset + 1`, Kafka's "next record to read", so a
/// restarted group resumes right after it.
public struct KafkaProcessedOffset: Sendable, Hashable, CustomStringConvertible {
    /// The topic.
    public var topic: String
    /// The partition.
    public var partition: Int32
    /// The offset of the last finished record.
    public var offset: Int64
    /// The last finished record of `topic`[`partition`].
    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }
    public var description: String { "\(topic)[\(partition)]@\(offset)" }
}

/// The highest finished offset per partition, accumulated over batches
/// cheaply (one topic String per run of records of a topic, not per record).
public struct KafkaOffsetTracker: Sendable {
    private var highest: [KafkaTopicPartition: Int64] = [:]

    /// An empty tracker.
    public init() {}

    /// Marks every record of `batch` finished.
    public mutating func finished(_ batch: KafkaMessageBatch) {
        var lastTopic: (OpaquePointer, String)?
        for record in batch {
            guard let rkt = record.message.pointee.rkt else { continue }
            let topic: String
            if let last = lastTopic, last.0 == rkt { topic = last.1 } else {
                topic = String(cString: rd_kafka_topic_name(rkt))
                lastTopic = (rkt, topic)
            }
            finished(topic: topic, partition: record.partition, offset: record.offset)
        }
    }

    /// Marks `offset` of `topic`[`partition`] finished (and everything before it).
    public mutating func finished(topic: String, partition: Int32, offset: Int64) {
        let key = KafkaTopicPartition(topic: topic, partition: partition)
        if offset > highest[key, default: -1] { highest[key] = offset }
    }

    /// The offsets to commit, sorted by topic and partition.
    public var offsets: [KafkaProcessedOffset] {
        highest.sorted { $0.key < $1.key }.map { KafkaProcessedOffset(topic: $0.key.topic, partition: $0.key.partition, offset: $0.value) }
    }

    /// Only the offsets of `partitions` (what to commit when they are revoked).
    public func offsets(of partitions: [KafkaTopicPartition]) -> [KafkaProcessedOffset] {
        let wanted = Set(partitions)
        return offsets.filter { wanted.contains(KafkaTopicPartition(topic: $0.topic, partition: $0.partition)) }
    }

    /// Forgets `partitions` (after they were revoked and committed).
    public mutating func forget(_ partitions: [KafkaTopicPartition]) {
        for p in partitions { highest[p] = nil }
    }

    /// Whether nothing is tracked.
    public var isEmpty: Bool { highest.isEmpty }
}
