// Passkeys (WebAuthn) for the login, account and confirmation pages. Served as a file: the CSP allows
// no inline script. Without JavaScript or WebAuthn the passkey controls stay hidden and the password
// forms work as before. Each page marks its controls with data attributes naming the endpoints.
(() => {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  const b64 = {  // base64url <-> ArrayBuffer, for browsers without parse*OptionsFromJSON / toJSON
    decode: (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)).buffer,
    encode: (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""),
  };

  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    return {...json, challenge: b64.decode(json.challenge), user: {...json.user, id: b64.decode(json.user.id)},
            excludeCredentials: (json.excludeCredentials || []).map((c) => ({...c, id: b64.decode(c.id)}))};
  }

  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    return {...json, challenge: b64.decode(json.challenge),
            allowCredentials: (json.allowCredentials || []).map((c) => ({...c, id: b64.decode(c.id)}))};
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const r = credential.response, out = {};
    for (const key of ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"]) {
      if (r[key]) out[key] = b64.encode(r[key]);
    }
    if (r.getTransports) out.transports = r.getTransports();
    return {id: credential.id, rawId: b64.encode(credential.rawId), type: credential.type, response: out,
            authenticatorAttachment: credential.authenticatorAttachment, clientExtensionResults: {}};
  }

  async function post(url, body) {
    const headers = {"Content-Type": "application/json", "Accept": "application/json"};
    const meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) headers["X-CSRF-Token"] = meta.content;
    const response = await fetch(url, {method: "POST", headers, body: JSON.stringify(body || {}),
                                       credentials: "same-origin"});
    const data = (response.headers.get("content-type") || "").includes("json") ? await response.json() : {};
    if (response.status === 403 && data.confirm) {  // a recent sign-in is needed first
      window.location.assign(data.confirm);
      throw new Error("confirm");
    }
    if (!response.ok) throw new Error(data.message || "Something went wrong. Try again.");
    return data;
  }

  function show(box, message) {
    const error = box.querySelector("[data-passkey-error]");
    if (!error) return;
    error.textContent = message;
    error.hidden = !message;
  }

  function failed(box, error) {
    if (error.name === "AbortError" || error.message === "confirm") return;
    show(box, error.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : error.message);
  }

  // Login page: a button, and passkeys offered in the username field's autofill (conditional mediation).
  const login = document.getElementById("passkey-signin");
  if (login) {
    let pending = null;  // the conditional request; a click on the button replaces it
    const signIn = async (mediation) => {
      const options = requestOptions(await post(login.dataset.options));
      pending = new AbortController();
      const credential = await navigator.credentials.get({publicKey: options, mediation, signal: pending.signal});
      const remember = document.getElementById("remember");
      const next = document.querySelector('input[name="next"]');
      const done = await post(login.dataset.verify, {credential: credentialJSON(credential),
                                                     remember: remember ? remember.checked : true,
                                                     next: next ? next.value : ""});
      window.location.assign(done.next);
    };
    login.hidden = false;
    login.querySelector("button").addEventListener("click", () => {
      if (pending) pending.abort();
      show(login, "");
      signIn("optional").catch((error) => failed(login, error));
    });
    if (PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then((available) => {
        if (available) signIn("conditional").catch((error) => failed(login, error));
      });
    }
  }

  // A button that runs one ceremony, showing what went wrong beside it.
  function ceremony(id, run) {
    const box = document.getElementById(id);
    if (!box) return;
    box.hidden = false;
    box.querySelector("button").addEventListener("click", async () => {
      show(box, "");
      try {
        await run(box);
      } catch (error) {
        failed(box, error);
      }
    });
  }

  // Account page: add a passkey under the name typed.
  ceremony("passkey-add", async (add) => {
    const options = creationOptions(await post(add.dataset.options));
    const credential = await navigator.credentials.create({publicKey: options});
    await post(add.dataset.register, {credential: credentialJSON(credential),
                                      name: document.getElementById("passkey-name").value});
    window.location.assign(add.dataset.done);
  });

  // Confirmation page: a passkey instead of the password.
  ceremony("passkey-confirm", async (confirm) => {
    const options = requestOptions(await post(confirm.dataset.options));
    const credential = await navigator.credentials.get({publicKey: options});
    await post(confirm.dataset.verify, {credential: credentialJSON(credential), next: confirm.dataset.next});
    window.location.assign(confirm.dataset.next);
  });
})();
