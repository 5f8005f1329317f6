import Foundation
import TelematicsWire

/// Service items and check-controls as JSON text in one column: they are
/// always read and written together with their call, so a child table per
/// item would cost joins for nothing. Enum values are stored as numbers (an
/// unlisted number survives) beside their name (for people reading the table).
enum TechnicalData {
    private struct Item: Codable {
        var type: Int32
        var typeName: String
        var status: Int32
        var statusName: String
        var dueInDays: Int32
        var dueInKm: Int32
        enum CodingKeys: String, CodingKey {
            case type, status
            case typeName = "type_name", statusName = "status_name", dueInDays = "due_in_days", dueInKm = "due_in_km"
        }
    }

    private struct Control: Codable {
        var code: UInt32
        var severity: Int32
        var severityName: String
        enum CodingKeys: String, CodingKey {
            case code, severity
            case severityName = "severity_name"
        }
    }

    // Written by hand, keys sorted as JSONEncoder's .sortedKeys would: it
    // runs for every stored call, and JSONEncoder cost more than the insert.
    static func json(_ items: [ServiceItem]) -> String {
        "[" + items.map {
            "{\"due_in_days\":\($0.dueInDays),\"due_in_km\":\($0.dueInKm),\"status\":\($0.status.rawValue),"
                + "\"status_name\":\(CanonicalJSONWriter.quoted($0.status.description)),\"type\":\($0.type.rawValue),\"type_name\":\(CanonicalJSONWriter.quoted($0.type.description))}"
        }.joined(separator: ",") + "]"
    }

    static func json(_ controls: [CheckControl]) -> String {
        "[" + controls.map {
            "{\"code\":\($0.code),\"severity\":\($0.severity.rawValue),\"severity_name\":\(CanonicalJSONWriter.quoted($0.severity.description))}"
        }.joined(separator: ",") + "]"
    }

    static func serviceItems(_ json: String) throws -> [ServiceItem] {
        try JSONDecoder().decode([Item].self, from: Data(json.utf8)).map {
            ServiceItem(type: ServiceItemType(rawValue: $0.type), status: ServiceStatus(rawValue: $0.status),
                        dueInDays: $0.dueInDays, dueInKm: $0.dueInKm)
        }
    }

    static func checkControls(_ json: String) throws -> [CheckControl] {
        try JSONDecoder().decode([Control].self, from: Data(json.utf8)).map {
            CheckControl(code: $0.code, severity: Severity(rawValue: $0.severity))
        }
    }
}
