import ArgumentParser
import Dispatch
import Synchronization
import TelematicsKafka

#if canImport(Glibc)
import Glibc
#endif

/// Options shared by the commands that talk to Kafka.
struct KafkaConnectionOptions: ParsableArguments {
    @Option(name: .customLong("brokers"), help: ArgumentHelp("Bootstrap servers, comma-separated host:port.", valueName: "HOST:PORT,..."))
    var brokers: String?

    @Option(
        name: .customLong("kafka-property"),
        help: ArgumentHelp("A librdkafka property, key=value, for security (SASL/TLS) or tuning (repeatable; wins over the defaults).", valueName: "KEY=VALUE"))
    var kafkaProperties: [String] = []

    @Option(help: ArgumentHelp("Batch compression of the producer: \(KafkaCompression.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "CODEC"))
    var compression: KafkaCompression = .lz4

    /// The producer configuration these options describe.
    func producerConfiguration(clientID: String) throws -> KafkaProducerConfiguration {
        guard let brokers, !KafkaBootstrap(brokers).servers.isEmpty else {
            throw ValidationError("--brokers is required (for example --brokers 127.0.0.1:9092, or the first line `telematics broker` prints)")
        }
        return try producerConfiguration(clientID: clientID, bootstrap: KafkaBootstrap(brokers))
    }

    /// The producer configuration these options describe, for `bootstrap`.
    func producerConfiguration(clientID: String, bootstrap: KafkaBootstrap) throws -> KafkaProducerConfiguration {
        var config = KafkaProducerConfiguration(bootstrap: bootstrap)
        config.clientID = clientID
        config.compression = compression
        for property in kafkaProperties {
            guard let eq = property.firstIndex(of: "="), eq != property.startIndex else {
                throw ValidationError("--kafka-property \(property): expected key=value")
            }
            config.properties[String(property[..<eq])] = String(property[property.index(after: eq)...])
        }
        return config
    }
}

extension KafkaCompression: ExpressibleByArgument {}

/// A flag set by SIGINT or SIGTERM, for loops that stop cleanly (flushing
/// what they produced) instead of dying mid-batch.
final class InterruptFlag: @unchecked Sendable {
    // Immutable after init; the signal sources only need to stay alive.
    private let raised = RaisedFlag()
    private let sources: [any DispatchSourceSignal]

    /// Takes over SIGINT and SIGTERM for the rest of the process.
    init() {
        let raised = self.raised
        sources = [SIGINT, SIGTERM].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { raised.value.store(true, ordering: .relaxed) }
            source.resume()
            return source
        }
    }

    /// Whether a signal arrived.
    var isRaised: Bool { raised.value.load(ordering: .relaxed) }
}

/// The atomic behind ``InterruptFlag``, shareable with signal handlers.
final class RaisedFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// Writes `line` and a newline to standard output at once (not buffered),
/// so a parent process reading a pipe sees it immediately.
func writeStandardOutputLine(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(1, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}

/// `n` with thousands separators, for summaries.
func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return n < 0 ? "-" + out : out
}
