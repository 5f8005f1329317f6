import CRdKafka

/// Any failure of the Kafka layer: librdkafka's error code (`rd_kafka_resp_err_t`)
/// with its text, plus where it happened when that is known.
///
/// One type for every Kafka failure (configuration, enqueue, delivery,
/// commit, admin), so a caller matches on ``code`` and never on strings.
public struct KafkaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// librdkafka's error code: negative values are client-side (`RD_KAFKA_RESP_ERR__...`),
    /// positive ones come from a broker (Kafka protocol error codes).
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        /// The numeric value of `rd_kafka_resp_err_t`.
        public let rawValue: Int32
        /// Wraps a numeric code.
        public init(rawValue: Int32) { self.rawValue = rawValue }
        init(_ err: rd_kafka_resp_err_t) { rawValue = Int32(err.rawValue) }
        var rd: rd_kafka_resp_err_t { rd_kafka_resp_err_t(rawValue: numericCast(rawValue)) }

        /// librdkafka's symbolic name without its prefix (`UNKNOWN_TOPIC_OR_PART`, `_MSG_TIMED_OUT`).
        public var name: String { String(cString: rd_kafka_err2name(rd)) }
        /// librdkafka's human-readable text for the code.
        public var text: String { String(cString: rd_kafka_err2str(rd)) }
        public var description: String { name }

        /// No error.
        public static let noError = Code(RD_KAFKA_RESP_ERR_NO_ERROR)
        /// A configuration property was unknown or had a bad value (client side).
        public static let invalidConfiguration = Code(RD_KAFKA_RESP_ERR__INVALID_ARG)
        /// The producer's local queue is full; wait for deliveries and retry.
        public static let queueFull = Code(RD_KAFKA_RESP_ERR__QUEUE_FULL)
        /// A message was not acknowledged within `message.timeout.ms`.
        public static let messageTimedOut = Code(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
        /// The topic does not exist in the client's metadata.
        public static let unknownTopic = Code(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
        /// The broker does not know the topic or partition.
        public static let unknownTopicOrPartition = Code(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        /// A topic being created exists already.
        public static let topicAlreadyExists = Code(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        /// An operation did not finish in time (client side).
        public static let timedOut = Code(RD_KAFKA_RESP_ERR__TIMED_OUT)
        /// The client is being destroyed or was closed.
        public static let destroyed = Code(RD_KAFKA_RESP_ERR__DESTROY)
        /// The message is larger than the broker or client allows.
        public static let messageTooLarge = Code(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
        /// The broker rejected a record as corrupt.
        public static let corruptMessage = Code(RD_KAFKA_RESP_ERR_INVALID_MSG)
        /// Not enough in-sync replicas to accept a write with `acks=all`.
        public static let notEnoughReplicas = Code(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS)
        /// Nothing to commit (no offsets stored or given).
        public static let noOffset = Code(RD_KAFKA_RESP_ERR__NO_OFFSET)
        /// A consumer reached the end of a partition (only with `enable.partition.eof`).
        public static let partitionEOF = Code(RD_KAFKA_RESP_ERR__PARTITION_EOF)
        /// A fatal error (for example of the idempotent producer): the client must be recreated.
        public static let fatal = Code(RD_KAFKA_RESP_ERR__FATAL)
        /// The client state does not allow the operation (closed, not subscribed).
        public static let state = Code(RD_KAFKA_RESP_ERR__STATE)
    }

    /// What failed.
    public let code: Code
    /// librdkafka's detailed text when it gave one (an `errstr` buffer or
    /// `rd_kafka_error_string`), otherwise the code's text.
    public let message: String
    /// Where it happened: the operation and, when known, topic, partition and offset.
    public let context: String
    /// Whether librdkafka says retrying the same operation may succeed.
    public let isRetriable: Bool
    /// Whether the client instance is unusable after this error.
    public let isFatal: Bool

    /// An error with `code`, librdkafka's `message` (the code's text when nil) and `context`.
    public init(_ code: Code, message: String? = nil, context: String = "", isRetriable: Bool = false, isFatal: Bool = false) {
        self.code = code
        self.message = message ?? code.text
        self.context = context
        self.isRetriable = isRetriable
        self.isFatal = isFatal
    }

    init(_ err: rd_kafka_resp_err_t, context: String) {
        self.init(Code(err), context: context)
    }

    /// Takes over (and destroys) a librdkafka `rd_kafka_error_t`.
    init(consuming error: OpaquePointer, context: String) {
        self.init(
            Code(rd_kafka_error_code(error)),
            message: String(cString: rd_kafka_error_string(error)),
            context: context,
            isRetriable: rd_kafka_error_is_retriable(error) != 0,
            isFatal: rd_kafka_error_is_fatal(error) != 0)
        rd_kafka_error_destroy(error)
    }

    public var description: String {
        context.isEmpty ? "\(code.name): \(message)" : "\(context): \(code.name): \(message)"
    }
}

/// Runs `body` with a 512-byte `errstr` buffer, the way librdkafka reports
/// configuration and construction errors.
func withErrorBuffer<R>(_ body: (UnsafeMutablePointer<CChar>, Int) -> R) -> (R, String) {
    var buffer = [CChar](repeating: 0, count: 512)
    let result = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return (result, text)
}

/// A librdkafka handle (`rd_kafka_t`, `rd_kafka_queue_t`) passed to a
/// dedicated thread; librdkafka's handles are thread-safe.
struct SendableHandle: @unchecked Sendable {
    let raw: OpaquePointer
    init(_ raw: OpaquePointer) { self.raw = raw }
}
