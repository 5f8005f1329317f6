import ArgumentParser
import Foundation
import Yams

/// `telematics run`'s options from a YAML settings file and from environment
/// variables, for deployments that configure by file or environment (a
/// container, a Kubernetes ConfigMap and Secret, a systemd unit) rather than
/// by command line.
///
/// - File (`--config FILE` or `TELEMATICS_CONFIG`): a YAML mapping whose keys
///   are the long options of `run` without their dashes (`brokers`,
///   `postgres`, `agent`, ...). A repeatable option takes a list; one of
///   `KEY=VALUE` pairs (`kafka-property`, `retention`, `charging-key`) also
///   takes a mapping, and `agent` a mapping of names to tokens. `brokers`
///   may be a list. An unknown key, a list where one value belongs, or a
///   value left empty stops the command with the file and line.
/// - Environment: `TELEMATICS_` and the option's name in capitals with `_`
///   for `-` (`TELEMATICS_BROKERS`, `TELEMATICS_EXIT_WHEN_IDLE`); a
///   repeatable option takes several values separated by `;`.
///
/// The command line wins over the environment, which wins over the file:
/// a source sets an option only if no stronger source set it; but the
/// `KEY=VALUE` pairs of the environment and the file add up, the
/// environment's winning for a key both set.
enum RunSettings {
    /// What values an option takes.
    enum Shape: Equatable {
        /// One value.
        case single
        /// One value, or a YAML list joined with commas (`brokers`).
        case commaList
        /// Repeatable: a value or a list of values.
        case list
        /// Repeatable `KEY<separator>VALUE` pairs: a mapping, a list of pairs, or one pair.
        case pairs(Character)
    }

    /// Which part of an option's value is secret, masked whenever it is printed.
    enum Secret {
        case none
        /// The password of a URL (`postgres://user:***@host/db`).
        case urlPassword
        /// The value of every pair (`carla:***`).
        case pairValue
        /// The value of a pair whose key names a secret (`sasl.password=****`).
        case secretNamedPair
    }

    /// One option of `run` that a file or the environment may set.
    struct Option {
        var name: String
        var shape: Shape = .single
        var secret: Secret = .none
        var repeatable: Bool { shape != .single && shape != .commaList }
    }

    /// The options a file or the environment may set: every option of `run`
    /// but `--config` itself (a test compares this list with `run --help`).
    static let options: [Option] = [
        Option(name: "brokers", shape: .commaList),
        Option(name: "kafka-property", shape: .pairs("="), secret: .secretNamedPair),
        Option(name: "compression"), Option(name: "group"), Option(name: "sqlite"),
        Option(name: "postgres", secret: .urlPassword),
        Option(name: "secrets"), Option(name: "exit-when-idle"), Option(name: "dict-dir"), Option(name: "batch-size"),
        Option(name: "routing-threads"), Option(name: "consent-cache"),
        Option(name: "partitions"), Option(name: "simulate-rate"), Option(name: "simulate-vehicles"), Option(name: "duration"),
        Option(name: "console"), Option(name: "agent", shape: .pairs(":"), secret: .pairValue),
        Option(name: "escalate-after"), Option(name: "log-level"),
        // RULE=DURATION (`raw-probes: 24h`); ID=FILE sealing keys, the active one; the pseudonym key.
        Option(name: "retention", shape: .pairs("=")),
        Option(name: "charging-key", shape: .pairs("=")),
        Option(name: "charging-key-id"), Option(name: "pseudonym-key-file"),
        Option(name: "retention-every"), Option(name: "privacy-officer", shape: .pairs(":"), secret: .pairValue),
    ]

    static func option(_ name: String) -> Option? { options.first { $0.name == name } }

    /// A bad settings file or variable, named for the person who wrote it.
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Where a setting comes from.
    enum Source: CustomStringConvertible {
        case file(path: String, line: Int?)
        case environment(variable: String)
        case defaultValue
        /// Pairs from both (``effective(file:environment:)``).
        indirect case merged(file: Source, environment: Source)

        var description: String {
            switch self {
            case .file(let path, let line): line.map { "\(path):\($0)" } ?? path
            case .environment(let variable): "environment \(variable)"
            case .defaultValue: "default"
            case .merged(let file, let environment): "\(file) and \(environment)"
            }
        }
    }

    /// An option's values from one source (several for a repeatable option).
    struct Setting {
        var name: String
        var values: [String]
        var source: Source
    }

    /// The environment variable of an option.
    static func variable(_ name: String) -> String {
        "TELEMATICS_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// `arguments` (of `run`, without the subcommand) with the options the
    /// environment and the settings file set added before them.
    static func expand(_ arguments: [String], environment: [String: String]) throws -> [String] {
        let given = Set(arguments.compactMap { argument -> String? in
            guard argument.hasPrefix("--") else { return nil }
            return String(argument.dropFirst(2).prefix { $0 != "=" })
        })
        let file = try (configPath(arguments) ?? environment["TELEMATICS_CONFIG"]).map(read) ?? []
        return Self.arguments(for: effective(file: file, environment: environment).filter { !given.contains($0.name) }) + arguments
    }

    /// The settings in effect from a file's and the environment's, in the
    /// order of ``options``: the environment's where both set an option, but
    /// for `KEY=VALUE` options the pairs of both, the environment's replacing
    /// the file's of the same key (a Secret's `sasl.password` beside a
    /// ConfigMap's tuning).
    static func effective(file: [Setting], environment: [String: String]) -> [Setting] {
        let fromEnvironment = fromEnvironment(environment)
        return options.compactMap { option in
            let inFile = file.first { $0.name == option.name }
            guard let inEnvironment = fromEnvironment.first(where: { $0.name == option.name }) else { return inFile }
            guard case .pairs(let separator) = option.shape, var merged = inFile else { return inEnvironment }
            func key(_ pair: String) -> Substring { pair.prefix { $0 != separator } }
            let replaced = Set(inEnvironment.values.map(key))
            merged.values = merged.values.filter { !replaced.contains(key($0)) } + inEnvironment.values
            merged.source = .merged(file: merged.source, environment: inEnvironment.source)
            return merged
        }
    }

    /// Settings as command-line arguments (`--name value`, repeated for each value).
    static func arguments(for settings: [Setting]) -> [String] {
        settings.flatMap { setting in setting.values.flatMap { ["--\(setting.name)", $0] } }
    }

    /// The settings the environment sets.
    static func fromEnvironment(_ environment: [String: String]) -> [Setting] {
        options.compactMap { option in
            let name = variable(option.name)
            guard let raw = environment[name] else { return nil }
            let values = option.repeatable ? raw.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } : [raw]
            return Setting(name: option.name, values: values, source: .environment(variable: name))
        }
    }

    /// The value of `--config` on the command line, if any.
    static func configPath(_ arguments: [String]) -> String? {
        for (i, argument) in arguments.enumerated() {
            if argument == "--config", i + 1 < arguments.count { return arguments[i + 1] }
            if argument.hasPrefix("--config=") { return String(argument.dropFirst("--config=".count)) }
        }
        return nil
    }

    /// The settings of a YAML file, in file order.
    static func read(_ path: String) throws -> [Setting] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw Failure(description: "settings file \(path): cannot be read")
        }
        return try parse(text, path: path)
    }

    /// The settings of a YAML document (`path` names it in messages).
    static func parse(_ text: String, path: String) throws -> [Setting] {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw Failure(description: "\(path): not valid YAML: \(error)")
        }
        guard let root else { return [] }  // empty, or comments only
        func fail(_ node: Node, _ message: String) -> Failure {
            Failure(description: "\(path)\(node.mark.map { ":\($0.line)" } ?? ""): \(message)")
        }
        guard let mapping = root.mapping else {
            throw fail(root, "expected a mapping of settings (`name: value` lines), got \(kind(of: root))")
        }
        var settings: [Setting] = []
        for (key, value) in mapping {
            guard let name = key.scalar?.string else { throw fail(key, "a setting's name must be plain text, got \(kind(of: key))") }
            guard let option = Self.option(name) else {
                throw fail(key, "unknown setting `\(name)` (known: \(options.map(\.name).joined(separator: ", ")))")
            }
            let values = try values(of: value, for: option) { fail($0, "`\(name)`: \($1)") }
            settings.append(Setting(name: name, values: values, source: .file(path: path, line: key.mark?.line)))
        }
        return settings
    }

    /// An option's values from its YAML node, checked against its shape.
    private static func values(of node: Node, for option: Option, fail: (Node, String) -> Failure) throws -> [String] {
        func text(_ node: Node) throws -> String {
            guard let scalar = node.scalar else { throw fail(node, "expected a value, got \(kind(of: node))") }
            guard scalar.style != .plain || !["", "~", "null", "Null", "NULL"].contains(scalar.string) else { throw fail(node, "has no value") }
            return scalar.string
        }
        func pair(_ node: Node, _ separator: Character) throws -> String {
            let value = try text(node)
            guard let i = value.firstIndex(of: separator), i != value.startIndex else {
                throw fail(node, "expected KEY\(separator)VALUE, got `\(value)`")
            }
            return value
        }
        switch option.shape {
        case .single:
            return [try text(node)]
        case .commaList:
            if let sequence = node.sequence { return [try sequence.map(text).joined(separator: ",")] }
            return [try text(node)]
        case .list:
            if let sequence = node.sequence { return try sequence.map(text) }
            return [try text(node)]
        case .pairs(let separator):
            if let mapping = node.mapping {
                return try mapping.map { key, value in
                    let k = try text(key)
                    guard !k.isEmpty else { throw fail(key, "an empty key") }
                    return "\(k)\(separator)\(try text(value))"
                }
            }
            if let sequence = node.sequence { return try sequence.map { try pair($0, separator) } }
            return [try pair(node, separator)]
        }
    }

    private static func kind(of node: Node) -> String {
        switch node {
        case .scalar: "a value"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    // MARK: Secrets

    /// Words in a librdkafka property name that make its value secret
    /// (sasl.password, ssl.key.password, sasl.oauthbearer.client.secret,
    /// ssl.key.pem, sasl.jaas.config...). A `.location` is a path, shown.
    static func isSecretProperty(_ key: String) -> Bool {
        let key = key.lowercased()
        if key.hasSuffix(".location") { return false }
        return ["password", "secret", "key", "sasl.oauthbearer.config", "jaas", "token", "credential"].contains { key.contains($0) }
    }

    /// A value of `name` as it may be printed: secrets masked.
    static func masked(_ name: String, _ value: String) -> String {
        switch option(name)?.secret ?? .none {
        case .none:
            return value
        case .urlPassword:
            guard var url = URLComponents(string: value), url.host != nil else { return value.isEmpty ? "" : "***" }
            if url.password != nil { url.password = "***" }
            return url.string ?? "***"
        case .pairValue:
            return (value.split(separator: ":", maxSplits: 1).first.map(String.init) ?? "") + ":***"
        case .secretNamedPair:
            guard let eq = value.firstIndex(of: "=") else { return value }
            return isSecretProperty(String(value[..<eq])) ? value[...eq] + "****" : value
        }
    }

    // MARK: Printing

    /// The settings as a YAML document that `--config` reads back: values
    /// masked, each line saying where the setting came from.
    static func yaml(_ settings: [Setting]) -> String {
        var lines: [String] = []
        for setting in settings {
            let shape = option(setting.name)?.shape ?? .single
            let note = "  # \(setting.source)"
            let values = setting.values.map { masked(setting.name, $0) }
            switch shape {
            case .single, .commaList:
                lines.append("\(setting.name): \(scalar(values.first ?? ""))" + note)
            case .list:
                lines.append("\(setting.name):" + note)
                lines += values.map { "  - \(scalar($0))" }
            case .pairs(let separator):
                lines.append("\(setting.name):" + note)
                lines += values.map { value in
                    let parts = value.split(separator: separator, maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                    return "  \(scalar(parts[0])): \(scalar(parts.count > 1 ? parts[1] : ""))"
                }
            }
        }
        return lines.joined(separator: "\n")
    }

    /// `value` as a YAML scalar that reads back as the same text: plain when
    /// that is unambiguous (hosts, numbers, paths), single-quoted otherwise.
    static func scalar(_ value: String) -> String {
        let plain = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:,@+-")
        let ambiguous = ["", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n"]
        if value.unicodeScalars.allSatisfy(plain.contains), !ambiguous.contains(value.lowercased()),
           !value.hasPrefix("-"), !value.hasPrefix(":"), !value.hasSuffix(":") {
            return value
        }
        return "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
