import Foundation
import Hummingbird
import Logging

/// A data subject's requests about one vehicle, answered by whoever holds
/// the stores (the `telematics` command wires the privacy module in): the
/// console only authenticates, routes and logs them.
public protocol VehicleDataRequests: Sendable {
    /// Everything stored about the vehicle, as one JSON document.
    func export(vin: String) async throws -> String
    /// Erases the vehicle everywhere; what was deleted and kept, as JSON.
    func erase(vin: String) async throws -> String
}

/// A request the privacy API cannot take.
public enum VehicleDataRequestError: Error, CustomStringConvertible {
    case badVIN(String)
    public var description: String {
        switch self {
        case .badVIN: "not a VIN: 17 characters of ISO 3779 (no I, O, Q)"
        }
    }
}

extension ConsoleServer {
    /// `GET /api/privacy/:vin/export` and `POST /api/privacy/:vin/erase`, for
    /// the privacy officers' tokens only (an agent's token is not enough:
    /// 403). Each request is logged with the officer's name.
    func addPrivacyRoutes(to router: Router<BasicRequestContext>) {
        guard let privacy else { return }
        let officers = configuration.privacyOfficers, agents = configuration.agents, logger = self.logger
        @Sendable func handle(
            _ request: Request, _ context: BasicRequestContext, action: String, _ body: @Sendable (String) async throws -> String
        ) async throws -> Response {
            guard let officer = Self.agent(request, officers) else {
                return Self.agent(request, agents) != nil
                    ? Self.text("only a privacy officer's token may \(action) a vehicle's data\n", status: .forbidden)
                    : Self.text("a privacy officer's bearer token is needed\n", status: .unauthorized)
            }
            let vin = try context.parameters.require("vin")
            do {
                let document = try await body(vin)
                logger.notice("privacy request answered", metadata: ["action": "\(action)", "officer": "\(officer)", "vin": "\(vin)"])
                return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: document)))
            } catch let error as VehicleDataRequestError {
                return Self.text("\(error)\n", status: .badRequest)
            } catch {
                logger.error("privacy request failed", metadata: ["action": "\(action)", "officer": "\(officer)", "error": "\(error)"])
                return Self.text("the stores failed; nothing was half-done, try again: \(error)\n", status: .serviceUnavailable)
            }
        }
        router.get("/api/privacy/:vin/export") { request, context in
            try await handle(request, context, action: "export") { try await privacy.export(vin: $0) }
        }
        router.post("/api/privacy/:vin/erase") { request, context in
            try await handle(request, context, action: "erase") { try await privacy.erase(vin: $0) }
        }
    }
}
