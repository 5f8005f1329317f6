/// The console page: plain HTML, CSS and JavaScript in the binary (no build
/// step, nothing fetched from the internet). The page follows
/// `/api/events` (server-sent events) and acknowledges through the JSON API
/// with the agent's token, which it asks for once and keeps in localStorage.
enum ConsoleAssets {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Call centre</title>
        <link rel="stylesheet" href="/console.css">
        </head>
        <body>
        <header>
          <h1>Call centre</h1>
          <span id="connection" class="connection down">connecting…</span>
          <label class="toggle"><input type="checkbox" id="show-acknowledged" checked> show acknowledged</label>
          <form id="login" hidden>
            <label>Agent token <input id="token" type="password" autocomplete="off" required></label>
            <button type="submit" id="save-token">Sign in</button>
          </form>
          <span id="agent" hidden><span id="agent-name"></span> <button type="button" id="sign-out">Sign out</button></span>
        </header>
        <p id="message" role="status"></p>
        <main>
          <section>
            <h2>P0 emergency: HV warn calls <span class="count" id="count-P0"></span></h2>
            <table id="queue-P0" class="queue"><thead><tr>
              <th>Age</th><th>Vehicle</th><th>Event</th><th>Thermal</th><th>Powertrain</th><th>Plug / doors / engine / ignition</th>
              <th>SoC</th><th>Hottest cell</th><th>Position</th><th>Status</th><th></th>
            </tr></thead><tbody></tbody></table>
          </section>
          <section>
            <h2>P1 urgent: breakdown and accident calls <span class="count" id="count-P1"></span></h2>
            <table id="queue-P1" class="queue"><thead><tr>
              <th>Age</th><th>Vehicle</th><th>Event</th><th>Thermal</th><th>Powertrain</th><th>Plug / doors / engine / ignition</th>
              <th>SoC</th><th>Hottest cell</th><th>Position</th><th>Status</th><th></th>
            </tr></thead><tbody></tbody></table>
          </section>
        </main>
        <script src="/console.js"></script>
        </body>
        </html>
        """#

    static let css = #"""
        body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d1f23; }
        header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1rem; background: #1d2733; color: #fff; flex-wrap: wrap; }
        header h1 { font-size: 1.2rem; margin: 0; }
        .connection { font-size: .85rem; padding: .1rem .5rem; border-radius: .8rem; }
        .connection.up { background: #1f7a3a; }
        .connection.down { background: #9a2a2a; }
        .toggle { font-size: .85rem; }
        #login, #agent { margin-left: auto; font-size: .9rem; }
        #message { margin: .4rem 1rem; min-height: 1.2rem; color: #9a2a2a; }
        main { padding: 0 1rem 2rem; }
        h2 { font-size: 1rem; margin: 1rem 0 .4rem; }
        table.queue { width: 100%; border-collapse: collapse; background: #fff; font-size: .88rem; }
        th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #e1e4e8; vertical-align: top; }
        th { background: #e9ecf1; font-weight: 600; }
        tr.escalated td { background: #ffd7d7; }
        tr.escalated td.status { color: #a10000; font-weight: 700; }
        tr.acknowledged td { color: #8a8f98; background: #f0f1f3; }
        tr.fresh td { animation: flash 1s ease-in-out 3; }
        @keyframes flash { 50% { background: #ffef9e; } }
        body.hide-acknowledged tr.acknowledged { display: none; }
        button.ack { font-weight: 600; }
        .vin { font-family: ui-monospace, monospace; }
        .empty td { color: #8a8f98; font-style: italic; }
        """#

    static let javascript = #"""
        "use strict";
        (() => {
          const alerts = new Map();          // id -> record
          let snapshotDone = false;
          let token = localStorage.getItem("callcentre.token") || "";
          const $ = (id) => document.getElementById(id);
          const baseTitle = document.title;
          let titleTimer = null;

          function message(text) { $("message").textContent = text || ""; }

          // --- agent sign-in: the token is asked for once and kept in localStorage ---
          async function whoami() {
            if (!token) { showLogin(); return; }
            const r = await fetch("/api/whoami", { headers: { Authorization: "Bearer " + token } });
            if (r.ok) {
              const body = await r.json();
              $("agent-name").textContent = "Agent: " + body.agent;
              $("login").hidden = true; $("agent").hidden = false;
              document.body.dataset.agent = body.agent;
            } else {
              token = ""; localStorage.removeItem("callcentre.token");
              message("The token was not accepted; sign in again.");
              showLogin();
            }
          }
          function showLogin() { $("login").hidden = false; $("agent").hidden = true; delete document.body.dataset.agent; }
          $("login").addEventListener("submit", (e) => {
            e.preventDefault();
            token = $("token").value.trim();
            localStorage.setItem("callcentre.token", token);
            $("token").value = "";
            message("");
            whoami();
          });
          $("sign-out").addEventListener("click", () => { token = ""; localStorage.removeItem("callcentre.token"); showLogin(); });
          $("show-acknowledged").addEventListener("change", (e) => document.body.classList.toggle("hide-acknowledged", !e.target.checked));

          // --- formatting ---
          function age(ms) {
            const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
            if (s < 60) return s + " s";
            if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
            return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
          }
          const time = (ms) => new Date(ms).toLocaleTimeString();
          const yesNo = (v, yes, no) => v === true ? yes : v === false ? no : "?";
          function state(a) {
            if (a.priority !== "P0") {
              const parts = [];
              if (a.mileage_km != null) parts.push(a.mileage_km + " km");
              if (a.battery_12v_mv != null) parts.push("12 V: " + (a.battery_12v_mv / 1000).toFixed(1) + " V");
              if (a.service_partner_id) parts.push("partner " + a.service_partner_id);
              return parts.join(", ") || "–";
            }
            return [yesNo(a.plugged_in, "plugged in", "unplugged"),
                    "doors " + yesNo(a.doors_open, "open", "closed"),
                    "trunk " + yesNo(a.trunk_open, "open", "closed"),
                    "engine " + yesNo(a.engine_running, "running", "off"),
                    "ignition " + yesNo(a.ignition_on, "on", "off")].join(", ")
                    + (a.vehicle_state ? " (" + a.vehicle_state + ")" : "");
          }
          function cell(tr, text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; }

          function row(r) {
            const a = r.alert;
            const tr = document.createElement("tr");
            tr.dataset.id = r.id;
            tr.dataset.received = r.received_at_ms;
            tr.className = r.acknowledged_at_ms != null ? "acknowledged" : r.escalated_at_ms != null ? "escalated" : "open";
            const ageCell = cell(tr, age(r.received_at_ms), "age");
            ageCell.dataset.since = r.received_at_ms;
            cell(tr, a.vin, "vin");
            cell(tr, a.type + (a.event_id ? " " + a.event_id : "") + (r.updates ? " (" + r.updates + " repeats)" : ""), "event");
            cell(tr, a.thermal || "–", "thermal");
            cell(tr, a.powertrain || "–", "powertrain");
            cell(tr, state(a), "state");
            cell(tr, a.soc_permille != null ? (a.soc_permille / 10).toFixed(1) + " %" : "–", "soc");
            cell(tr, a.max_cell_temp_dc != null ? (a.max_cell_temp_dc / 10).toFixed(1) + " °C" : "–", "temp");
            const pos = cell(tr, "", "position");
            if (a.position) {
              const lat = (a.position.lat_e7 / 1e7).toFixed(6), lon = (a.position.lon_e7 / 1e7).toFixed(6);
              const link = document.createElement("a");
              link.href = "https://www.openstreetmap.org/?mlat=" + lat + "&mlon=" + lon + "#map=16/" + lat + "/" + lon;
              link.target = "_blank"; link.rel = "noopener";
              link.textContent = lat + ", " + lon;
              pos.appendChild(link);
            } else { pos.textContent = "no position"; }
            let status = "open";
            if (r.acknowledged_at_ms != null) status = "acknowledged by " + r.acknowledged_by + " at " + time(r.acknowledged_at_ms);
            else if (r.escalated_at_ms != null) status = "ESCALATED at " + time(r.escalated_at_ms);
            if (r.acknowledged_at_ms != null && r.escalated_at_ms != null) status += " (was escalated)";
            cell(tr, status, "status");
            const action = cell(tr, "", "action");
            if (r.acknowledged_at_ms == null) {
              const b = document.createElement("button");
              b.type = "button"; b.className = "ack"; b.textContent = "Acknowledge";
              b.addEventListener("click", () => acknowledge(r.id, b));
              action.appendChild(b);
            }
            return tr;
          }

          function render() {
            for (const priority of ["P0", "P1"]) {
              const body = document.querySelector("#queue-" + priority + " tbody");
              const list = [...alerts.values()].filter((r) => r.alert.priority === priority)
                .sort((x, y) => y.received_at_ms - x.received_at_ms || (x.id < y.id ? -1 : 1));
              body.replaceChildren(...list.map(row));
              if (list.length === 0) {
                const tr = document.createElement("tr"); tr.className = "empty";
                const td = cell(tr, "no alerts"); td.colSpan = 11; body.appendChild(tr);
              }
              const open = list.filter((r) => r.acknowledged_at_ms == null).length;
              $("count-" + priority).textContent = "(" + open + " open)";
            }
          }

          // --- cues for a new P0 alert: a beep and a flashing title ---
          let audio = null;
          function beep() {
            try {
              audio = audio || new (window.AudioContext || window.webkitAudioContext)();
              const o = audio.createOscillator(), g = audio.createGain();
              o.type = "square"; o.frequency.value = 880;
              g.gain.setValueAtTime(0.2, audio.currentTime);
              g.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.6);
              o.connect(g); g.connect(audio.destination);
              o.start(); o.stop(audio.currentTime + 0.6);
            } catch (e) { /* no audio: the title still flashes */ }
          }
          function flashTitle(text) {
            clearInterval(titleTimer);
            let on = true, n = 0;
            titleTimer = setInterval(() => {
              document.title = on ? "\u26a0 " + text : baseTitle;
              on = !on;
              if (++n > 20 && document.hasFocus()) { clearInterval(titleTimer); document.title = baseTitle; }
            }, 700);
          }

          function receive(r) {
            const known = alerts.has(r.id);
            alerts.set(r.id, r);
            render();
            if (snapshotDone && !known && r.alert.priority === "P0") {
              beep();
              flashTitle("NEW P0 " + r.alert.vin);
              document.body.dataset.lastP0 = r.id;
              const tr = document.querySelector('tr[data-id="' + CSS.escape(r.id) + '"]');
              if (tr) tr.classList.add("fresh");
            }
          }

          async function acknowledge(id, button) {
            if (!token) { message("Sign in with your agent token to acknowledge."); showLogin(); $("token").focus(); return; }
            button.disabled = true;
            const [vin, ...event] = id.split("/");
            const url = "/api/alerts/" + encodeURIComponent(vin) + "/" + encodeURIComponent(event.join("/")) + "/ack";
            try {
              const r = await fetch(url, { method: "POST", headers: { Authorization: "Bearer " + token } });
              if (r.status === 401) {
                token = ""; localStorage.removeItem("callcentre.token");
                message("The token was not accepted; sign in again."); showLogin();
              } else if (!r.ok) {
                message("Acknowledging failed: HTTP " + r.status);
              } else {
                message("");
                receive(await r.json());
              }
            } catch (e) { message("Acknowledging failed: " + e); }
            button.disabled = false;
          }

          // --- live feed ---
          function connect() {
            const source = new EventSource("/api/events");
            source.onopen = () => { $("connection").textContent = "live"; $("connection").className = "connection up"; };
            source.onmessage = (e) => receive(JSON.parse(e.data));
            source.addEventListener("ready", () => { snapshotDone = true; document.body.dataset.ready = "true"; });
            source.onerror = () => {
              $("connection").textContent = "reconnecting…"; $("connection").className = "connection down";
              snapshotDone = false;
            };
          }

          setInterval(() => {
            for (const td of document.querySelectorAll("td.age")) td.textContent = age(Number(td.dataset.since));
          }, 1000);

          render();
          whoami();
          connect();
        })();
        """#
}
