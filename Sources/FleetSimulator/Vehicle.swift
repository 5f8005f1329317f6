import TelematicsWire
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Towns the simulated vehicles live around (degrees).
let danishTowns: [(lat: Double, lon: Double)] = [
    (55.6761, 12.5683),  // Copenhagen
    (56.1629, 10.2039),  // Aarhus
    (55.4038, 10.4024),  // Odense
    (57.0488, 9.9217),  // Aalborg
    (55.4765, 8.4594),  // Esbjerg
    (55.6415, 12.0803),  // Roskilde
    (55.7113, 9.5357),  // Vejle
    (56.4607, 10.0364),  // Randers
]

/// One simulated vehicle's state: where it is, what it drives, what it has sent.
struct Vehicle {
    let vin: VIN
    let homeLatE7: Int64
    let homeLonE7: Int64
    let powertrain: Powertrain
    var latE7: Int64
    var lonE7: Int64
    var headingDeg: Double
    var speedDkmh: Double = 0
    var mileageKm: UInt32
    var socPermille: UInt32
    var sequence: UInt64
    var hvEvents = 0
    var lastHvEventID: String?
    var chargeSessions = 0
    var consent = ConsentState.defaults

    init(index: Int, random: inout SplitMix64, startMs: Int64) {
        vin = Vehicle.makeVIN(index: index, random: &random)
        let town = danishTowns[Int(random.next(below: UInt64(danishTowns.count)))]
        homeLatE7 = Int64((town.lat + (random.unit() - 0.5) * 0.1) * 1e7)
        homeLonE7 = Int64((town.lon + (random.unit() - 0.5) * 0.16) * 1e7)
        latE7 = homeLatE7
        lonE7 = homeLonE7
        headingDeg = random.unit() * 360
        powertrain = random.chance(0.6) ? .bev : .phev
        mileageKm = UInt32(random.int(500...180_000))
        socPermille = UInt32(random.int(200...950))
        // Vehicles have been connected for a while: counters start anywhere.
        sequence = UInt64(random.int(0...50_000))
    }

    /// A VIN of ISO 3779's form with a valid check digit (position 9):
    /// WMI `WMW`, a model code, check digit, model year, plant, serial.
    static func makeVIN(index: Int, random: inout SplitMix64) -> VIN {
        let models = ["11DJ0", "21GK0", "51EF3", "31CS1", "61XA9", "22BN7"]
        let years = ["M", "N", "P", "R", "S"]
        let plants = ["2", "A", "T"]
        var text = "WMW" + models[Int(random.next(below: UInt64(models.count)))] + "0"
        text += years[Int(random.next(below: UInt64(years.count)))] + plants[Int(random.next(below: UInt64(plants.count)))]
        let serial = String(index % 1_000_000)
        text += String(repeating: "0", count: 6 - serial.count) + serial
        var chars = Array(text.utf8)
        chars[8] = checkDigit(chars)
        return VIN(String(decoding: chars, as: UTF8.self))!
    }

    /// ISO 3779 (North American) check digit of a 17-character VIN.
    static func checkDigit(_ chars: [UInt8]) -> UInt8 {
        let weights = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
        let letters = Array("ABCDEFGHJKLMNPRSTUVWXYZ".utf8)
        let values = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9]
        var sum = 0
        for (i, c) in chars.enumerated() {
            let value: Int
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                value = Int(c - UInt8(ascii: "0"))
            } else {
                value = letters.firstIndex(of: c).map { values[$0] } ?? 0
            }
            sum += value * weights[i]
        }
        let digit = sum % 11
        return digit == 10 ? UInt8(ascii: "X") : UInt8(ascii: "0") + UInt8(digit)
    }

    var position: Position { Position(latE7: Int32(latE7), lonE7: Int32(lonE7)) }

    /// 10 to 30 one-second points of driving from where the vehicle is.
    mutating func rttiProbe(at now: Int64, random: inout SplitMix64) -> RttiProbe {
        let count = random.int(10...30)
        var points: [RttiPoint] = []
        points.reserveCapacity(count)
        if speedDkmh < 50 { speedDkmh = Double(random.int(150...900)) }
        for i in 0..<count {
            // Speed and heading wander; far from home, the vehicle turns back.
            speedDkmh = min(1300, max(0, speedDkmh + (random.unit() - 0.5) * 60))
            headingDeg += (random.unit() - 0.5) * 20
            let dLat = Double(homeLatE7 - latE7) / 1e7
            let dLon = Double(homeLonE7 - lonE7) / 1e7
            if dLat * dLat + dLon * dLon > 0.25 {
                headingDeg = atan2(dLon, dLat) * 180 / .pi
            }
            headingDeg = headingDeg.truncatingRemainder(dividingBy: 360)
            if headingDeg < 0 { headingDeg += 360 }
            let metres = speedDkmh / 36  // decimetres per hour / 36 = metres per second
            let radians = headingDeg * .pi / 180
            let latDegrees = Double(latE7) / 1e7
            latE7 += Int64(metres * cos(radians) / 111_320 * 1e7)
            lonE7 += Int64(metres * sin(radians) / (111_320 * cos(latDegrees * .pi / 180)) * 1e7)
            points.append(RttiPoint(
                tMs: now + Int64(i) * 1000, latE7: latE7, lonE7: lonE7,
                speedDkmh: UInt32(speedDkmh), headingDeg: UInt32(headingDeg) % 360))
        }
        mileageKm &+= UInt32(Double(count) * speedDkmh / 36 / 1000)
        var hazards: [Hazard] = []
        if random.chance(0.03) {
            hazards.append(Hazard(type: HazardType(rawValue: Int32(random.int(1...6))), pointIndex: UInt32(random.int(0...(count - 1)))))
        }
        // Positions stay within a degree of Denmark, so deltas always fit 32 bits.
        return RttiProbe(points: points, recordedAtMs: now, hazards: hazards)!
    }

    /// A teleservice call; about 1.5 % are breakdowns and 0.5 % accidents.
    mutating func teleserviceCall(random: inout SplitMix64) -> TeleserviceCall {
        var call = TeleserviceCall()
        let r = random.unit()
        call.trigger = switch r {
        case ..<0.015: .breakdown
        case ..<0.020: .accident
        case ..<0.32: .stateChange
        case ..<0.72: .monthly
        case ..<0.92: .smartMaintenance
        default: .manual
        }
        let urgent = call.trigger == .breakdown || call.trigger == .accident
        call.mileageKm = mileageKm
        var types = Set<Int32>()
        for _ in 0..<random.int(1...3) { types.insert(Int32(random.int(1...9))) }
        call.serviceItems = types.sorted().map { type in
            let status = ServiceStatus(rawValue: Int32(random.int(1...3)))
            return ServiceItem(
                type: ServiceItemType(rawValue: type), status: status,
                dueInDays: status == .overdue ? -Int32(random.int(1...60)) : Int32(random.int(0...700)),
                dueInKm: status == .overdue ? -Int32(random.int(1...3000)) : Int32(random.int(0...30_000)))
        }
        let controls = urgent ? random.int(1...3) : (random.chance(0.3) ? random.int(1...2) : 0)
        call.checkControls = (0..<controls).map { _ in
            CheckControl(code: UInt32(random.int(1...999)), severity: Severity(rawValue: urgent ? 3 : Int32(random.int(1...3))))
        }
        call.battery12vMv = UInt32(urgent && random.chance(0.5) ? random.int(10_200...11_700) : random.int(12_000...14_600))
        call.position = position
        call.servicePartnerID = "DK" + String(10_000 + random.int(0...89_999))
        call.inWorkshop = !urgent && random.chance(0.03)
        return call
    }

    /// A finished charging session ending at (or a few minutes before) `now`.
    mutating func chargeSession(endingAt now: Int64, random: inout SplitMix64) -> ChargeSession {
        chargeSessions += 1
        var s = ChargeSession()
        s.sessionID = "cs-\(vin)-\(chargeSessions)"
        let dc = random.chance(0.3)
        let minutes = dc ? random.int(15...60) : random.int(45...600)
        s.endedAtMs = now - Int64(random.int(0...300_000))
        s.startedAtMs = s.endedAtMs - Int64(minutes) * 60_000
        let start = UInt32(random.int(50...700))
        let end = min(1000, start + UInt32(random.int(100...600)))
        s.socStartPermille = start
        s.socEndPermille = end
        let capacityWh: UInt32 = powertrain == .bev ? 75_000 : 14_000
        s.energyWh = (end - start) * capacityWh / 1000
        s.current = dc ? .dc : .ac
        s.maxPowerW = dc ? UInt32(random.int(50...250)) * 1000 : (random.chance(0.5) ? 11_000 : 7_400)
        s.site = ChargingSite(rawValue: dc ? Int32(random.int(3...4)) : Int32(random.int(1...3)))
        s.endReason = ChargeEndReason(rawValue: random.chance(0.02) ? 4 : Int32(random.int(1...3)))
        s.position = s.site == .home ? Position(latE7: Int32(homeLatE7), lonE7: Int32(homeLonE7)) : position
        socPermille = end
        return s
    }

    /// The vehicle's consent state after the owner changed one setting
    /// (rarely, the account is deleted).
    mutating func consentChange(random: inout SplitMix64) -> ConsentState {
        switch random.int(0...4) {
        case 0: consent.teleservices.toggle()
        case 1: consent.smartMaintenance.toggle()
        case 2: consent.chargingHistory.toggle()
        case 3: consent.chargingLocation.toggle()
        default: consent.rtti.toggle()
        }
        if random.chance(0.005) { consent.accountDeleted = true }
        return consent
    }

    /// An HV battery warn call; with `repeatChance` it resends the last event id.
    mutating func hvWarnCall(repeatChance: Double, random: inout SplitMix64) -> HvWarnCall {
        var call = HvWarnCall()
        if let last = lastHvEventID, random.chance(repeatChance) {
            call.eventID = last
        } else {
            hvEvents += 1
            call.eventID = "hv-\(vin)-\(hvEvents)"
            lastHvEventID = call.eventID
        }
        call.thermal = Thermal(rawValue: Int32(random.int(1...3)))
        call.powertrain = powertrain
        call.position = position
        let charging = random.chance(0.4)
        call.vehicleState = charging ? .charging : .parked
        call.pluggedIn = charging
        call.doorsOpen = random.chance(0.05)
        call.trunkOpen = random.chance(0.03)
        call.engineRunning = false
        call.ignitionOn = random.chance(0.02)
        call.maxCellTempDc = Int32(random.int(450...950))
        call.socPermille = socPermille
        return call
    }
}
