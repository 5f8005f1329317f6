import ArgumentParser
import Foundation

/// `telematics run`'s options from a settings file and from environment
/// variables, for deployments that configure by file or environment (a
/// container, a systemd unit) rather than by command line.
///
/// - File (`--config FILE` or `TELEMATICS_CONFIG`): one `name = value` per
///   line, `name` a long option of `run` without its dashes (`brokers`,
///   `postgres`, `agent`, ...); `#` starts a comment; a repeatable option
///   (`agent`, `kafka-property`) may appear on several lines.
/// - Environment: `TELEMATICS_` and the option's name in capitals with `_`
///   for `-` (`TELEMATICS_BROKERS`, `TELEMATICS_EXIT_WHEN_IDLE`); a
///   repeatable option takes several values separated by `;`.
///
/// The command line wins over the environment, which wins over the file:
/// a source sets an option only if no stronger source set it.
enum RunSettings {
    /// The options a file or the environment may set, and whether each is repeatable.
    static let options: [(name: String, repeatable: Bool)] = [
        ("brokers", false), ("kafka-property", true), ("compression", false), ("group", false), ("sqlite", false),
        ("postgres", false), ("secrets", false), ("exit-when-idle", false), ("dict-dir", false), ("batch-size", false),
        ("partitions", false), ("simulate-rate", false), ("simulate-vehicles", false), ("duration", false),
        ("console", false), ("agent", true), ("escalate-after", false), ("log-level", false),
        ("pseudonym-key-file", false), ("charging-key", true), ("charging-key-id", false), ("retention", true),
        ("retention-every", false), ("privacy-officer", true),
    ]

    /// A bad settings file or variable, named for the person who wrote it.
    struct Failure: Error, CustomStringConvertible {
        var description: String
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
        var added: [String] = []
        var setHere = given
        func add(_ name: String, _ values: [String]) {
            guard !setHere.contains(name) else { return }
            for value in values { added += ["--\(name)", value] }
        }
        // The environment, then the file: whichever sets an option first keeps it.
        var fromEnvironment: Set<String> = []
        for (name, repeatable) in options {
            guard let raw = environment[variable(name)] else { continue }
            add(name, repeatable ? raw.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) } : [raw])
            fromEnvironment.insert(name)
        }
        setHere.formUnion(fromEnvironment)
        if let path = configPath(arguments) ?? environment["TELEMATICS_CONFIG"] {
            for (name, values) in try read(path) { add(name, values) }
        }
        return added + arguments
    }

    /// The value of `--config` on the command line, if any.
    static func configPath(_ arguments: [String]) -> String? {
        for (i, argument) in arguments.enumerated() {
            if argument == "--config", i + 1 < arguments.count { return arguments[i + 1] }
            if argument.hasPrefix("--config=") { return String(argument.dropFirst("--config=".count)) }
        }
        return nil
    }

    /// The settings of a file, in file order, values of one name together.
    static func read(_ path: String) throws -> [(String, [String])] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw Failure(description: "settings file \(path): cannot be read")
        }
        let known = Dictionary(uniqueKeysWithValues: options.map { ($0.name, $0.repeatable) })
        var order: [String] = []
        var values: [String: [String]] = [:]
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let trimmed = content.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw Failure(description: "\(path):\(number + 1): expected `name = value`, got `\(trimmed)`")
            }
            let name = trimmed[..<eq].trimmingCharacters(in: .whitespaces)
            var value = trimmed[trimmed.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            guard let repeatable = known[name] else {
                throw Failure(description: "\(path):\(number + 1): unknown setting `\(name)` (known: \(options.map(\.name).joined(separator: ", ")))")
            }
            if values[name] == nil { order.append(name) } else if !repeatable {
                throw Failure(description: "\(path):\(number + 1): `\(name)` is set twice")
            }
            values[name, default: []].append(value)
        }
        return order.map { ($0, values[$0]!) }
    }
}
