import CRdKafka
import Synchronization

/// An in-process Kafka cluster for tests, demos and `telematics broker`:
/// librdkafka's mock cluster (`rdkafka_mock.h`), a real Kafka-protocol
/// server on loopback with consumer groups, idempotent producers,
/// compression, and fault injection.
///
/// Ports: librdkafka 2.0.2 binds each mock broker to 127.0.0.1 on an
/// ephemeral port and has no setting to choose it. With `portBase`, the
/// cluster also listens on `portBase ..< portBase + brokers` and forwards
/// each connection to the matching broker (a ``LoopbackForwarder``), so a
/// fixed bootstrap address works; brokers still advertise their own
/// ephemeral addresses in metadata, and clients connect to those after
/// bootstrapping.
///
/// Only this type depends on the mock: everything else in the module works
/// with any Kafka.
public final class EmbeddedKafkaCluster: @unchecked Sendable {
    // The mock cluster API is thread-safe (it posts to the cluster's own
    // thread); handles are immutable after init.
    private let client: OpaquePointer
    private let cluster: OpaquePointer
    private let forwarder: LoopbackForwarder?
    /// Number of brokers; their ids are 1 through `brokerCount`.
    public let brokerCount: Int
    /// The brokers' own addresses (`127.0.0.1:PORT`), by broker id - 1.
    public let brokerAddresses: [String]

    /// Starts `brokers` brokers on loopback; with `portBase`, also the
    /// fixed forwarding ports described on the type.
    public init(brokers: Int = 3, portBase: Int? = nil) throws(KafkaError) {
        guard brokers >= 1 else { throw KafkaError(.invalidConfiguration, message: "a cluster needs at least one broker", context: "embedded cluster") }
        // A plain producer handle owns the mock cluster; it never produces.
        let conf = try makeConf([("client.id", "telematics-embedded-cluster"), ("log_level", "3")], context: "embedded cluster")
        client = try makeClient(RD_KAFKA_PRODUCER, conf: conf, context: "embedded cluster")
        guard let cluster = rd_kafka_mock_cluster_new(client, Int32(brokers)) else {
            rd_kafka_destroy(client)
            throw KafkaError(.fail, message: "rd_kafka_mock_cluster_new failed (see librdkafka's log)", context: "embedded cluster")
        }
        self.cluster = cluster
        brokerCount = brokers
        brokerAddresses = String(cString: rd_kafka_mock_cluster_bootstraps(cluster)).split(separator: ",").map(String.init)
        if let portBase {
            do {
                forwarder = try LoopbackForwarder(
                    routes: brokerAddresses.enumerated().map { (portBase + $0.offset, $0.element) })
            } catch {
                rd_kafka_mock_cluster_destroy(cluster)
                rd_kafka_destroy(client)
                throw error
            }
        } else {
            forwarder = nil
        }
    }

    deinit {
        forwarder?.stop()
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(client)
    }

    /// The bootstrap servers to give clients: the fixed forwarding ports
    /// when a port base was given, else the brokers' own addresses.
    public var bootstrap: KafkaBootstrap {
        KafkaBootstrap(forwarder?.listenAddresses ?? brokerAddresses)
    }

    /// Creates `name` with `partitions` partitions (replicas are
    /// bookkeeping only in the mock).
    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws(KafkaError) {
        let err = rd_kafka_mock_topic_create(cluster, name, Int32(clamping: partitions), Int32(clamping: replicationFactor))
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "create topic \(name)") }
    }

    /// Takes broker `id` down: its connections close and it refuses new ones.
    public func setBrokerDown(_ id: Int32) throws(KafkaError) {
        let err = Self.brokerSwitch.withLock { _ in rd_kafka_mock_broker_set_down(cluster, id) }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "broker \(id) down") }
    }

    /// Brings broker `id` back.
    public func setBrokerUp(_ id: Int32) throws(KafkaError) {
        let err = Self.brokerSwitch.withLock { _ in rd_kafka_mock_broker_set_up(cluster, id) }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "broker \(id) up") }
    }

    /// Starts a child process (`start` calls `Process.run` or
    /// `posix_spawn`) so that no broker of this process goes down meanwhile.
    ///
    /// Taking a broker down, librdkafka 2.0.2 closes its listening socket
    /// and at once binds the port again, and aborts the whole process when
    /// that bind fails. It fails while a child being spawned holds a copy of
    /// the descriptor table: until the child's exec closes the copies, the
    /// old socket is still listening on the port. A process that spawns
    /// children while its brokers go down (a test suite) starts them here.
    public static func startingProcess<T, E: Error>(_ start: () throws(E) -> T) throws(E) -> T {
        try brokerSwitch.withLock { _ throws(E) in try start() }
    }

    /// Held while a broker goes down or up, and while a child process starts.
    private static let brokerSwitch = Mutex<Void>(())

    /// Delays every response of broker `id` by `milliseconds`.
    public func setRoundTripTime(broker id: Int32, milliseconds: Int) throws(KafkaError) {
        let err = rd_kafka_mock_broker_set_rtt(cluster, id, Int32(clamping: milliseconds))
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "broker \(id) rtt") }
    }

    /// Makes the next `errors.count` requests of protocol API `apiKey`
    /// (0 Produce, 1 Fetch, 8 OffsetCommit, ...) fail with these codes, in order,
    /// on whichever broker receives them.
    public func pushRequestErrors(apiKey: KafkaProtocolAPI, _ errors: [KafkaError.Code]) {
        let codes = errors.map(\.rd)
        codes.withUnsafeBufferPointer {
            rd_kafka_mock_push_request_errors_array(cluster, apiKey.rawValue, $0.count, $0.baseAddress)
        }
    }

    /// Drops errors pushed for `apiKey` that have not fired yet.
    public func clearRequestErrors(apiKey: KafkaProtocolAPI) {
        rd_kafka_mock_clear_request_errors(cluster, apiKey.rawValue)
    }

    /// Makes every request for `topic` fail with `error` (`.noError` clears it).
    public func setTopicError(_ topic: String, _ error: KafkaError.Code) {
        rd_kafka_mock_topic_set_error(cluster, topic, error.rd)
    }

    /// Makes broker `id` the coordinator of consumer group `group` (its
    /// members find it again after their next coordinator error).
    public func setGroupCoordinator(_ group: String, broker id: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_coordinator_set(cluster, "group", group, id)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "coordinator of \(group)") }
    }

    /// Moves the leadership of `topic`[`partition`] to broker `id`.
    public func setPartitionLeader(_ topic: String, partition: Int32, broker id: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_partition_set_leader(cluster, topic, partition, id)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "leader of \(topic)[\(partition)]") }
    }
}

/// Kafka protocol request types, for fault injection.
public struct KafkaProtocolAPI: RawRepresentable, Sendable, Hashable {
    /// The protocol's ApiKey.
    public let rawValue: Int16
    /// Wraps an ApiKey.
    public init(rawValue: Int16) { self.rawValue = rawValue }
    /// Produce (0).
    public static let produce = KafkaProtocolAPI(rawValue: 0)
    /// Fetch (1).
    public static let fetch = KafkaProtocolAPI(rawValue: 1)
    /// ListOffsets (2).
    public static let listOffsets = KafkaProtocolAPI(rawValue: 2)
    /// Metadata (3).
    public static let metadata = KafkaProtocolAPI(rawValue: 3)
    /// OffsetCommit (8).
    public static let offsetCommit = KafkaProtocolAPI(rawValue: 8)
    /// OffsetFetch (9).
    public static let offsetFetch = KafkaProtocolAPI(rawValue: 9)
    /// FindCoordinator (10).
    public static let findCoordinator = KafkaProtocolAPI(rawValue: 10)
    /// JoinGroup (11).
    public static let joinGroup = KafkaProtocolAPI(rawValue: 11)
    /// Heartbeat (12).
    public static let heartbeat = KafkaProtocolAPI(rawValue: 12)
    /// SyncGroup (14).
    public static let syncGroup = KafkaProtocolAPI(rawValue: 14)
    /// InitProducerId (22).
    public static let initProducerID = KafkaProtocolAPI(rawValue: 22)
}

extension KafkaError.Code {
    /// A generic client-side failure.
    public static let fail = KafkaError.Code(RD_KAFKA_RESP_ERR__FAIL)
    /// The client is not authorised for the topic (permanent).
    public static let topicAuthorizationFailed = KafkaError.Code(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
    /// The broker is not the partition's leader (retriable).
    public static let notLeaderForPartition = KafkaError.Code(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION)
    /// The broker did not answer within the request's timeout (retriable).
    public static let requestTimedOut = KafkaError.Code(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT)
    /// The group coordinator is not available yet (retriable; OffsetCommit, JoinGroup).
    public static let coordinatorNotAvailable = KafkaError.Code(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE)
    /// The broker is not the group's coordinator (retriable after a coordinator lookup).
    public static let notCoordinator = KafkaError.Code(RD_KAFKA_RESP_ERR_NOT_COORDINATOR)
    /// The connection failed (retriable).
    public static let transport = KafkaError.Code(RD_KAFKA_RESP_ERR__TRANSPORT)
}
