import Foundation
import TelematicsKafka
import TelematicsWire

/// A hazard for map partners on `traffic.probes`: pseudonymised, never a VIN.
public struct HazardReport: Codable, Hashable, Sendable {
    public var pseudonym: String
    public var type: String
    public var tMs: Int64
    public var latE7: Int64
    public var lonE7: Int64
    public var speedDkmh: UInt32
    public var headingDeg: UInt32
    public var tile: Int64
    enum CodingKeys: String, CodingKey {
        case pseudonym, type, tile
        case tMs = "t_ms", latE7 = "lat_e7", lonE7 = "lon_e7", speedDkmh = "speed_dkmh", headingDeg = "heading_deg"
    }

    /// The report as JSON with sorted keys: what ``OutputEncoding/json(_:)``
    /// makes of it, written directly (a hazard is one of twenty probes on
    /// real traffic; JSONEncoder took about 10 µs each).
    public var json: [UInt8] {
        var w = CanonicalJSONWriter(capacity: 192)
        func field(_ name: String, _ value: String) {
            w.bytes.append(contentsOf: name.utf8)
            w.bytes.append(contentsOf: value.utf8)
        }
        field("{\"heading_deg\":", String(headingDeg))
        field(",\"lat_e7\":", String(latE7))
        field(",\"lon_e7\":", String(lonE7))
        w.bytes.append(contentsOf: ",\"pseudonym\":".utf8)
        w.string(pseudonym)
        field(",\"speed_dkmh\":", String(speedDkmh))
        field(",\"t_ms\":", String(tMs))
        field(",\"tile\":", String(tile))
        w.bytes.append(contentsOf: ",\"type\":".utf8)
        w.string(type)
        w.bytes.append(UInt8(ascii: "}"))
        return w.bytes
    }
}

enum OutputEncoding {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static func json(_ value: some Encodable) -> [UInt8] {
        // Encoding these plain structs cannot fail.
        (try? Array(encoder.encode(value))) ?? Array("{}".utf8)
    }
}

/// Headers of a dead-lettered record (WIRE.md): the reason and where it came from.
enum DeadLetter {
    static func headers(error: WireError, topic: String, partition: Int32, offset: Int64) -> [KafkaHeader] {
        [
            KafkaHeader(name: "error", value: Array(error.code.rawValue.utf8)),
            KafkaHeader(name: "error.detail", value: Array(error.detail.utf8)),
            KafkaHeader(name: "source.topic", value: Array(topic.utf8)),
            KafkaHeader(name: "source.partition", value: Array(String(partition).utf8)),
            KafkaHeader(name: "source.offset", value: Array(String(offset).utf8)),
        ]
    }
}
