import Foundation
import TelematicsKafka

extension Process {
    /// `run()`, never while a mock broker of this test process goes down or
    /// up: a child spawned at that moment makes librdkafka abort the whole
    /// test process (``EmbeddedKafkaCluster/startingProcess(_:)`` says why).
    /// Every test that starts a process starts it through this.
    public func start() throws {
        try EmbeddedKafkaCluster.startingProcess { try run() }
    }
}
