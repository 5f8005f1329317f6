/// Where the console listens and who may act on it.
public struct ConsoleConfiguration: Sendable {
    /// The address to bind (loopback by default: reads are open).
    public var host: String
    /// The port; 0 lets the kernel pick one (see ``ConsoleServer``'s `onRunning`).
    public var port: Int
    /// The agents' bearer tokens: token -> agent name.
    public var agents: [String: String]
    /// The privacy officers' bearer tokens (token -> name): only they may
    /// export or erase a vehicle's data through the console's API.
    public var privacyOfficers: [String: String] = [:]

    /// A configuration; `agents` maps each token to its agent's name.
    public init(host: String = "127.0.0.1", port: Int = 8080, agents: [String: String] = [:]) {
        self.host = host
        self.port = port
        self.agents = agents
    }

    /// Parses `name:token` pairs (as given on the command line or in a
    /// configuration file) into a token -> name map. Fails on a pair without
    /// a name or a token, or on a token given twice.
    public static func agents(fromPairs pairs: [String]) throws(ConsoleConfigurationError) -> [String: String] {
        var out: [String: String] = [:]
        for pair in pairs {
            guard let colon = pair.firstIndex(of: ":") else { throw ConsoleConfigurationError(message: "agent \"\(pair)\" is not name:token") }
            let name = String(pair[..<colon]), token = String(pair[pair.index(after: colon)...])
            guard !name.isEmpty, !token.isEmpty else { throw ConsoleConfigurationError(message: "agent \"\(pair)\" is not name:token") }
            guard out[token] == nil else { throw ConsoleConfigurationError(message: "agent \(name): token already given to \(out[token]!)") }
            out[token] = name
        }
        return out
    }

    /// Parses `host:port` (or `:port`, or `host`, keeping the other part).
    public mutating func setAddress(_ address: String) throws(ConsoleConfigurationError) {
        guard let colon = address.lastIndex(of: ":") else {
            if !address.isEmpty { host = address }
            return
        }
        let h = address[..<colon], p = address[address.index(after: colon)...]
        guard let port = Int(p), (0...65535).contains(port) else { throw ConsoleConfigurationError(message: "bad console address \(address)") }
        if !h.isEmpty { host = String(h) }
        self.port = port
    }
}

/// A bad console setting.
public struct ConsoleConfigurationError: Error, CustomStringConvertible, Sendable {
    /// What is wrong.
    public var message: String
    /// The message.
    public var description: String { message }
}
