import ArgumentParser
import TelematicsKafka
import TelematicsWire

#if canImport(Glibc)
import Glibc
#endif

/// `telematics broker`: an embedded Kafka cluster for development and tests.
struct Broker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an embedded Kafka cluster (librdkafka's mock cluster) on loopback.",
        discussion: """
            Creates the default topics of WIRE.md, prints the bootstrap servers as the \
            first line of standard output, and runs until SIGINT or SIGTERM. Other \
            processes (kcat -b ADDR -L, telematics produce) can use it. Data lives in \
            memory only and is gone when the command ends.

            librdkafka 2.0.2's mock brokers always bind ephemeral ports on 127.0.0.1. \
            With --port-base N the command also listens on N, N+1, ... (one port per \
            broker) and forwards each connection to its broker, and prints those fixed \
            addresses. Clients bootstrap through them; the brokers' metadata still \
            advertises their own ephemeral ports, which clients then use directly \
            (all on loopback).
            """
    )

    /// The topics of WIRE.md: ingress per kind, then the outputs.
    static let defaultTopics = MessageKind.allCases.map(\.defaultTopic) + ["callcentre.alerts", "traffic.probes", "telematics.dlq"]

    @Option(help: "Number of brokers.")
    var brokers: Int = 3

    @Option(help: "Partitions of each default topic.")
    var partitions: Int = 12

    @Option(name: .customLong("port-base"), help: ArgumentHelp("Also accept connections on fixed ports N, N+1, ... (forwarded to the brokers).", valueName: "N"))
    var portBase: Int?

    func validate() throws {
        guard (1...32).contains(brokers) else { throw ValidationError("--brokers must be 1 to 32") }
        guard (1...1024).contains(partitions) else { throw ValidationError("--partitions must be 1 to 1024") }
        if let portBase, !(1...(65535 - brokers)).contains(portBase) {
            throw ValidationError("--port-base must leave room for \(brokers) ports below 65536")
        }
    }

    func run() throws {
        let interrupt = InterruptFlag()
        let cluster: EmbeddedKafkaCluster
        do {
            cluster = try EmbeddedKafkaCluster(brokers: brokers, portBase: portBase)
            for topic in Self.defaultTopics {
                try cluster.createTopic(topic, partitions: partitions, replicationFactor: min(brokers, 3))
            }
        } catch {
            writeStandardError("telematics broker: \(error)\n")
            throw ExitCode.failure
        }
        writeStandardOutputLine(cluster.bootstrap.description)
        writeStandardError("""
            telematics broker: \(brokers) brokers (\(cluster.brokerAddresses.joined(separator: ","))), \
            \(Self.defaultTopics.count) topics of \(partitions) partitions; Ctrl-C to stop\n
            """)
        while !interrupt.isRaised { usleep(100_000) }
        writeStandardError("telematics broker: stopping\n")
        withExtendedLifetime(cluster) {}
    }
}
