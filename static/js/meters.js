// The meter form shows the fields of the chosen kind only (without JavaScript every group
// stays visible, each under its own heading; the server ignores the others).
(function () {
  function sync(form) {
    var kind = form.querySelector("select[name=kind]");
    if (!kind) return;
    form.querySelectorAll("fieldset[data-kind]").forEach(function (set) {
      set.hidden = set.getAttribute("data-kind") !== kind.value;
    });
  }
  document.querySelectorAll("form[data-meter-form]").forEach(function (form) {
    sync(form);
    form.addEventListener("change", function (e) {
      if (e.target.name === "kind") sync(form);
    });
  });
})();
