// The alert inbox, live: the portal pushes each new or changed alarm on /inbox/ws; the page
// then re-reads /inbox (one markup, the server's) and keeps the focus where it was.  The
// buttons post with fetch() (the CSRF field included); without this script they are plain
// forms that come back to /inbox.  High-priority alarms: the role="alert" banner, and a short
// beep when the user turned sound on (never an error when audio is blocked).
(function () {
  "use strict";
  var banner = document.getElementById("inbox-alarm");
  var live = document.getElementById("inbox-live");
  var message = document.getElementById("inbox-message");
  var sound = document.getElementById("inbox-sound");
  var audio = null;
  var delay = 500;

  function localTimes(root) {
    var times = root.querySelectorAll("time[data-epoch-ms]");
    for (var i = 0; i < times.length; i++) {
      var ms = Number(times[i].getAttribute("data-epoch-ms"));
      if (!isNaN(ms)) {
        times[i].textContent = new Date(ms).toLocaleString(undefined, {
          year: "numeric", month: "short", day: "numeric",
          hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
        });
      }
    }
  }

  function beep() {
    if (!sound || !sound.checked) { return; }
    try {
      var Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) { return; }
      audio = audio || new Context();
      var resumed = audio.resume ? audio.resume() : null;
      if (resumed && resumed.catch) { resumed.catch(function () {}); }
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.value = 0.15;
      osc.connect(gain);
      gain.connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.25);
    } catch (e) { /* audio blocked or absent: the banner is the cue */ }
  }

  function cue(item) {
    banner.textContent = "High priority alarm: " + item.label;
    banner.setAttribute("data-cues", String(Number(banner.getAttribute("data-cues")) + 1));
    var row = document.getElementById("alert-" + item.alert_id);
    if (row) { row.classList.add("flash"); }
    beep();
  }

  function sync() {
    var focused = document.activeElement && document.activeElement.id;
    return fetch("/inbox", { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.redirected || !r.ok) { window.location.assign("/inbox"); throw new Error("signed out"); }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["patient-alarms", "technical-alarms"].forEach(function (id) {
          var fresh = doc.querySelector("#" + id + " tbody");
          var old = document.querySelector("#" + id + " tbody");
          if (fresh && old) { old.replaceWith(document.importNode(fresh, true)); }
        });
        var freshBanner = doc.getElementById("inbox-alarm");
        if (freshBanner && freshBanner.textContent !== banner.textContent) {
          banner.textContent = freshBanner.textContent;
        }
        localTimes(document);
        if (focused) {
          var again = document.getElementById(focused);
          if (again) { again.focus(); }
        }
      })
      .catch(function () {});
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + window.location.host + "/inbox/ws");
    live.setAttribute("data-live", "connecting");
    live.textContent = "Live updates: connecting";
    ws.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (data.type === "hello") {
        delay = 500;
        live.setAttribute("data-live", "live");
        live.textContent = "Live updates: on";
        sync();
        return;
      }
      if (data.type !== "alert") { return; }
      var item = data.item;
      sync().then(function () {
        if (data.event === "notified" && item.priority === "high" &&
            (item.state === "new" || item.state === "escalated")) {
          cue(item);
        }
      });
    };
    ws.onclose = function () {
      live.setAttribute("data-live", "offline");
      live.textContent = "Live updates: reconnecting";
      window.setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !(form.classList.contains("ack") || form.classList.contains("snooze"))) {
      return;
    }
    event.preventDefault();
    var body = new URLSearchParams();
    new FormData(form).forEach(function (value, key) { body.append(key, value); });
    var submitter = event.submitter;
    if (submitter && submitter.name) { body.set(submitter.name, submitter.value); }
    fetch(form.action, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { Accept: "application/json" }
    }).then(function (r) {
      return r.json().then(function (data) { return { ok: r.ok, data: data }; });
    }).then(function (answer) {
      if (answer.ok && answer.data.item) {
        var item = answer.data.item;
        message.textContent = item.state_text + ": " + item.label;
      } else {
        var error = answer.data.error || { code: "internal_error", message: "" };
        message.textContent = "Refused (" + error.code + "): " + error.message;
      }
      return sync();
    }).catch(function () { message.textContent = "The portal did not answer; try again."; });
  });

  if (sound) {
    try { sound.checked = window.localStorage.getItem("inbox-sound") === "on"; } catch (e) {}
    sound.addEventListener("change", function () {
      try { window.localStorage.setItem("inbox-sound", sound.checked ? "on" : "off"); } catch (e) {}
      if (sound.checked) { beep(); }
    });
  }
  localTimes(document);
  connect();
  // A snooze ends on its own: the rows follow the server's clock at least twice a minute.
  window.setInterval(sync, 30000);
})();
