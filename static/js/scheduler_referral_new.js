// The referral form: POST /api/v1/referrals/ (submitted at once, so the router takes it),
// then each file to the referral's conversation, then "my referrals", which says where
// the referral went and its ticket. Errors ({code, detail, fields}) are shown next to
// their fields, and focus goes to the first field in error.

import { $, api, format, notice, t } from "./scheduler_common.js";

const form = $("referral-form");
const send = $("send");
const formError = $("form-error");
const filesInput = $("attachments");
const skipFiles = $("skip-files");

const MAX_FILE_BYTES = 10 * 1024 * 1024;
const FILE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/heic", "image/heif", "application/pdf"];
const FILE_EXTENSIONS = /\.(jpe?g|png|webp|heic|heif|pdf)$/i;

let sentReferral = null; // the id once sent: trying again only attaches files
const attached = new Set(); // files already attached, so a retry does not send them twice
const fileKey = (file) => `${file.name}:${file.size}:${file.lastModified}`;

function clearErrors() {
  formError.hidden = true;
  formError.textContent = "";
  for (const box of form.querySelectorAll(".field")) {
    box.classList.remove("invalid");
    const error = box.querySelector(".field-error");
    error.hidden = true;
    error.textContent = "";
    for (const control of box.querySelectorAll("input, select, textarea")) control.removeAttribute("aria-invalid");
  }
}

// fields: {api field name: [messages]}; fields the form has no place for go in the summary.
function showErrors(fields, detail = t.fixFields) {
  let first = null;
  const unplaced = [];
  for (const [name, messages] of Object.entries(fields)) {
    const box = form.querySelector(`.field[data-field="${name}"]`);
    const text = [].concat(messages).join(" ");
    if (!box) {
      unplaced.push(text);
      continue;
    }
    const error = box.querySelector(".field-error");
    error.textContent = text;
    error.hidden = false;
    box.classList.add("invalid");
    for (const control of box.querySelectorAll("input, select, textarea")) control.setAttribute("aria-invalid", "true");
  }
  // The first field in the form's order, whatever order the answer listed them in.
  const firstBox = form.querySelector(".field.invalid");
  if (firstBox) first = firstBox.querySelector("input:checked") || firstBox.querySelector("input, select, textarea");
  formError.textContent = [detail, ...unplaced].filter(Boolean).join(" ");
  formError.hidden = false;
  (first || formError).focus();
}

function checkRequired(data) {
  const fields = {};
  for (const name of ["patient_id", "specialty", "reason"]) {
    if (!String(data.get(name) || "").trim()) fields[name] = [t.required];
  }
  return fields;
}

function checkFiles(files) {
  const problems = [];
  for (const file of files) {
    if (file.size > MAX_FILE_BYTES) problems.push(format(t.fileTooLarge, { name: file.name }));
    else if (!FILE_TYPES.includes(file.type) && !FILE_EXTENSIONS.test(file.name)) {
      problems.push(format(t.fileType, { name: file.name }));
    }
  }
  return problems.length ? { file: problems } : {};
}

function busy(on) {
  send.disabled = on;
  form.setAttribute("aria-busy", on ? "true" : "false");
}

function apiFailed(error) {
  const data = error.data || {};
  let fields = data.fields || {};
  // The patient is read through the access helper: one not in my care is "not found".
  if (error.status === 404 && !Object.keys(fields).length) fields = { patient_id: [t.notMyPatient] };
  showErrors(fields, data.detail || t.error);
}

// The referral is on its way; a file was refused. Lock what was sent, say so, and let the
// clinician choose the files again or leave without them.
function filesFailed(error) {
  for (const control of form.querySelectorAll("input, select, textarea")) {
    if (control !== filesInput) control.disabled = true;
  }
  const done = `${form.dataset.done}?sent=${sentReferral}#referral-${sentReferral}`;
  skipFiles.href = done;
  skipFiles.hidden = false;
  send.textContent = t.retryFiles;
  const data = error.data || {};
  const detail = data.detail || t.error;
  showErrors(
    { file: [[].concat((data.fields && data.fields.file) || []).join(" ") || detail] },
    format(t.sentFilesFailed, { id: sentReferral, detail }),
  );
}

// A field's error goes once the field is changed; the others stay until the next try.
form.addEventListener("input", (event) => {
  const box = event.target.closest(".field.invalid");
  if (!box) return;
  box.classList.remove("invalid");
  box.querySelector(".field-error").hidden = true;
  for (const control of box.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const data = new FormData(form);
  const files = [...filesInput.files].filter((file) => !attached.has(fileKey(file)));
  const problems = { ...(sentReferral ? {} : checkRequired(data)), ...checkFiles(files) };
  if (Object.keys(problems).length) return showErrors(problems);

  busy(true);
  if (!sentReferral) {
    notice(t.sending);
    try {
      const referral = await api("/api/v1/referrals/", {
        method: "POST",
        body: {
          patient_id: Number(data.get("patient_id")),
          specialty: data.get("specialty"),
          priority: data.get("priority"),
          requested_mode: data.get("requested_mode"),
          reason: String(data.get("reason")).trim(),
          clinical_summary: String(data.get("clinical_summary") || "").trim(),
          submit: true,
        },
      });
      sentReferral = referral.id;
    } catch (error) {
      busy(false);
      return apiFailed(error);
    }
  }
  // Files go after the referral is submitted, so a refused file never holds the patient
  // back: the referral is routed and the files follow in its conversation.
  for (const file of files) {
    notice(format(t.attaching, { name: file.name }));
    const upload = new FormData();
    upload.append("file", file);
    try {
      await api(`/api/v1/referrals/${sentReferral}/attachments/`, { method: "POST", form: upload });
      attached.add(fileKey(file));
    } catch (error) {
      busy(false);
      return filesFailed(error);
    }
  }
  location.assign(`${form.dataset.done}?sent=${sentReferral}#referral-${sentReferral}`);
});
