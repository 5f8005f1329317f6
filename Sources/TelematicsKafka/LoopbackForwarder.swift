import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Fixed loopback ports that forward TCP connections to other loopback
/// addresses: how ``EmbeddedKafkaCluster`` offers a fixed bootstrap port
/// although librdkafka's mock brokers only bind ephemeral ones.
///
/// Plain byte copying, one thread per direction of each connection: meant
/// for the few connections of a development cluster, not for load.
final class LoopbackForwarder: Sendable {
    /// `127.0.0.1:PORT` of each listening port, in route order.
    let listenAddresses: [String]
    private let listeners: [Int32]
    private let targets: [(port: UInt16, host: String)]
    private let stopping = Atomic<Bool>(false)
    private let open = Mutex(Set<Int32>())

    /// Listens on each route's port and forwards to its `host:port` target.
    init(routes: [(listenPort: Int, target: String)]) throws(KafkaError) {
        var listeners: [Int32] = []
        var targets: [(UInt16, String)] = []
        for (port, target) in routes {
            guard let colon = target.lastIndex(of: ":"), let targetPort = UInt16(target[target.index(after: colon)...]),
                  let listenPort = UInt16(exactly: port), listenPort > 0
            else {
                listeners.forEach { close($0) }
                throw KafkaError(.invalidConfiguration, message: "bad port \(port) or target \(target)", context: "port forwarding")
            }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = listenPort.bigEndian
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard fd >= 0, bound == 0, listen(fd, 64) == 0 else {
                let problem = String(cString: strerror(errno))
                if fd >= 0 { close(fd) }
                listeners.forEach { close($0) }
                throw KafkaError(.fail, message: "cannot listen on 127.0.0.1:\(port): \(problem)", context: "port forwarding")
            }
            listeners.append(fd)
            targets.append((targetPort, String(target[..<colon])))
        }
        self.listeners = listeners
        self.targets = targets
        listenAddresses = routes.map { "127.0.0.1:\($0.listenPort)" }
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "kafka-port-forward"
        thread.start()
    }

    private func acceptLoop() {
        var fds = listeners.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        while !stopping.load(ordering: .relaxed) {
            // A short timeout so stop() is noticed without a wake-up pipe.
            guard poll(&fds, nfds_t(fds.count), 200) > 0 else { continue }
            for (i, p) in fds.enumerated() where p.revents & Int16(POLLIN) != 0 {
                let client = accept(p.fd, nil, nil)
                guard client >= 0 else { continue }
                guard let upstream = connectLoopback(port: targets[i].port) else {
                    close(client)
                    continue
                }
                open.withLock { $0.formUnion([client, upstream]) }
                let pair = ConnectionPair(client: client, upstream: upstream)
                for (from, to) in [(client, upstream), (upstream, client)] {
                    let t = Thread { [self] in
                        copy(from: from, to: to)
                        if pair.finishDirection() {
                            open.withLock { $0.subtract([client, upstream]) }
                            close(client)
                            close(upstream)
                        }
                    }
                    t.name = "kafka-port-forward-copy"
                    t.start()
                }
            }
        }
        listeners.forEach { close($0) }
    }

    private func connectLoopback(port: UInt16) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Copies until end of stream or an error, then half-closes the destination.
    private func copy(from: Int32, to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        outer: while true {
            let n = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            var written = 0
            while written < n {
                let w = buffer.withUnsafeBytes { send(to, $0.baseAddress! + written, n - written, Int32(MSG_NOSIGNAL)) }
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { break outer }
                written += w
            }
        }
        shutdown(to, Int32(SHUT_WR))
        shutdown(from, Int32(SHUT_RD))
    }

    /// Stops accepting and cuts open connections.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        for fd in open.withLock({ $0 }) { shutdown(fd, Int32(SHUT_RDWR)) }
    }
}

/// Counts the finished directions of one forwarded connection.
private final class ConnectionPair: Sendable {
    let client: Int32
    let upstream: Int32
    private let finished = Atomic<Int>(0)
    init(client: Int32, upstream: Int32) {
        self.client = client
        self.upstream = upstream
    }
    /// True for the second direction to finish: it closes both sockets.
    func finishDirection() -> Bool { finished.add(1, ordering: .acquiringAndReleasing).newValue == 2 }
}
